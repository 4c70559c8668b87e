//! One Binance market-stream connection: its control requests and its format.

use std::sync::Arc;

use super::control::{self, Request, RequestError, RequestId};
use super::envelope::{Format, Variants};
use super::{looks_like_stream, subscribe_error};
use crate::util::now_us;
use crate::ws::close;
use crate::ws::dialect::{Cause, Closing, Conversation, Link};
use crate::ws::frame;

/// The dialect's state of one connection: the format it receives events in.
pub struct MarketConversation {
    format: Format,
    variants: Arc<Variants>,
}

impl MarketConversation {
    /// A connection that starts in `format`.
    pub fn new(format: Format, variants: Arc<Variants>) -> Self {
        MarketConversation { format, variants }
    }

    /// Carries out a request; returns the `result` JSON.
    fn execute(
        &mut self,
        request: Request,
        id: &RequestId,
        link: &mut Link<'_>,
    ) -> Result<String, RequestError> {
        let invalid = |msg: &str| RequestError {
            id: Some(id.get().to_string()),
            code: 2,
            msg: msg.to_string(),
        };
        match request {
            Request::Subscribe(streams) => {
                if !streams.iter().all(|name| looks_like_stream(name)) {
                    return Err(invalid("Invalid request: invalid stream"));
                }
                link.subscribe(streams)
                    .map_err(|e| invalid(subscribe_error(&e)))?;
                Ok("null".into())
            }
            Request::Unsubscribe(streams) => {
                if !streams.iter().all(|name| looks_like_stream(name)) {
                    return Err(invalid("Invalid request: invalid stream"));
                }
                link.unsubscribe(&streams);
                Ok("null".into())
            }
            Request::ListSubscriptions => {
                let names: Vec<&str> = link.streams().collect();
                Ok(serde_json::to_string(&names).expect("strings serialize"))
            }
            Request::SetCombined(combined) => {
                self.format.combined = combined;
                link.set_variant(self.variants.of(self.format));
                Ok("null".into())
            }
            Request::GetCombined => Ok(self.format.combined.to_string()),
        }
    }
}

impl Conversation for MarketConversation {
    fn on_text(&mut self, text: &str, link: &mut Link<'_>) -> Option<Closing> {
        let reply = control::parse(text).and_then(|(request, id)| {
            let result = self.execute(request, &id, link)?;
            Ok(control::result_json(&result, &id))
        });
        match reply {
            Ok(json) => {
                link.send(frame::text(&[json.as_bytes()]));
                None
            }
            Err(error) => {
                link.count_error(&error.code.to_string());
                link.send(frame::text(&[control::error_json(&error).as_bytes()]));
                error
                    .closes_connection()
                    .then(|| Closing::new(close::POLICY, "Invalid JSON"))
            }
        }
    }

    /// A planned close (shutdown, drain, lifetime) is announced with `serverShutdown`.
    fn closing(&self, cause: Cause) -> Closing {
        let closing = cause.closing();
        match cause {
            Cause::Shutdown | Cause::LifetimeReached => {
                closing.with_notice(self.format.server_shutdown(now_us()))
            }
            _ => closing,
        }
    }
}
