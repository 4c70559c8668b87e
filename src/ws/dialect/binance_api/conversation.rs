//! One WebSocket API connection as the session sees it: each text frame is parsed here (a bad
//! id closes the connection at once) and handed to the connection's worker.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::reply::{answer, error_body};
use super::request::{self, Malformed, BAD_ID};
use super::worker::Worker;
use super::Core;
use crate::ws::close;
use crate::ws::dialect::{Closing, Conversation, Link};

/// The dialect's state of one connection.
pub struct ApiConversation {
    core: Arc<Core>,
    peer: IpAddr,
    connected_ms: i64,
    return_rate_limits: bool,
    /// The worker's inbox, once the first request started it.
    worker: Option<mpsc::UnboundedSender<request::Request>>,
}

impl ApiConversation {
    /// A connection from `peer`, opened at `connected_ms`.
    pub fn new(core: Arc<Core>, peer: IpAddr, connected_ms: i64, return_rate_limits: bool) -> Self {
        ApiConversation {
            core,
            peer,
            connected_ms,
            return_rate_limits,
            worker: None,
        }
    }
}

impl Conversation for ApiConversation {
    fn on_text(&mut self, text: &str, link: &mut Link<'_>) -> Option<Closing> {
        let request = match request::parse(text) {
            Ok(request) => request,
            Err(Malformed::BadId) => {
                link.count_error("-1135");
                link.send(answer(
                    "null",
                    400,
                    ("error", &error_body(-1135, BAD_ID)),
                    None,
                ));
                return Some(Closing::new(close::POLICY, "disconnected"));
            }
            Err(Malformed::Invalid { id, msg }) => {
                link.count_error("-1102");
                link.send(answer(&id, 400, ("error", &error_body(-1102, &msg)), None));
                return None;
            }
        };
        let worker = self.worker.get_or_insert_with(|| {
            let (sender, inbox) = mpsc::unbounded_channel();
            let worker = Worker::new(
                Arc::clone(&self.core),
                self.peer,
                self.connected_ms,
                self.return_rate_limits,
                link.replier(),
                link.user_feeds(),
            );
            tokio::spawn(worker.run(inbox));
            sender
        });
        // The worker only stops when this sender is dropped.
        let _ = worker.send(request);
        None
    }
}
