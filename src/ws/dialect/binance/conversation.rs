//! One Binance market-stream connection: its control requests and its format.
//!
//! A listen key may be subscribed like a stream (binance-connector's `user_data()` does): the
//! key is looked up off the connection's task, and the answer goes out once it was.

use std::net::IpAddr;
use std::sync::Arc;

use super::control::{self, Request, RequestError, RequestId};
use super::envelope::{Format, Variants};
use super::user_data::UserData;
use super::{subscribe_error, Market};
use crate::auth::listen_keys::looks_like_listen_key;
use crate::config::strip_namespace;
use crate::util::now_us;
use crate::ws::close;
use crate::ws::dialect::{Cause, Closing, Conversation, Link};
use crate::ws::frame;
use crate::ws::resume::ResumeFrom;

/// What every connection of the dialect shares.
pub struct Shared {
    /// The hub's frame variant of each format.
    pub variants: Variants,
    /// Listen keys.
    pub user_data: Arc<UserData>,
    /// Spot or USD-M futures: how client stream names become the hub's.
    pub market: Market,
}

/// The dialect's state of one connection: the format it receives events in.
pub struct MarketConversation {
    format: Format,
    shared: Arc<Shared>,
    peer: IpAddr,
}

/// Splits requested names into streams (by the hub's names) and listen keys (where `market`
/// serves them); `None` when one is neither.
fn split(market: Market, names: Vec<String>) -> Option<(Vec<String>, Vec<String>)> {
    let mut streams = Vec::with_capacity(names.len());
    let mut keys = Vec::new();
    for name in names {
        if market.is_stream(&name) {
            streams.push(market.hub_name(&name));
        } else if market.accounts && looks_like_listen_key(&name) {
            keys.push(name);
        } else {
            return None;
        }
    }
    Some((streams, keys))
}

impl MarketConversation {
    /// A connection from `peer` that starts in `format`.
    pub fn new(format: Format, shared: Arc<Shared>, peer: IpAddr) -> Self {
        MarketConversation {
            format,
            shared,
            peer,
        }
    }

    /// Turns sequence numbers in the combined wrapper on or off.
    fn set_resume(&mut self, resume: bool, link: &mut Link<'_>) {
        self.format.seq = resume;
        link.set_variant(self.shared.variants.of(self.format));
    }

    /// Subscribes listen keys: looked up by a task, which answers the request.
    fn subscribe_keys(&self, keys: Vec<String>, id: &RequestId, link: &mut Link<'_>) {
        let user_data = Arc::clone(&self.shared.user_data);
        let (replier, feeds, hangup) = (link.replier(), link.user_feeds(), link.hangup());
        let (format, peer, id) = (self.format, self.peer, id.clone());
        tokio::spawn(async move {
            for key in keys {
                let listen_key = match user_data.open(&key, peer).await {
                    Ok(listen_key) => listen_key,
                    Err(refusal) => {
                        let error = RequestError {
                            id: Some(id.get().to_string()),
                            code: refusal.code,
                            msg: refusal.msg,
                        };
                        replier.send(frame::text(&[control::error_json(&error).as_bytes()]));
                        return;
                    }
                };
                if feeds.add(UserData::subscription(&listen_key, format)) {
                    user_data.hold(&listen_key.key, &hangup, Some(format));
                }
            }
            let reply = control::result_json("null", &id);
            replier.send(frame::text(&[reply.as_bytes()]));
        });
    }

    /// Carries out a request; returns the `result` JSON, or `None` when the answer goes out
    /// later.
    fn execute(
        &mut self,
        request: Request,
        id: &RequestId,
        link: &mut Link<'_>,
    ) -> Result<Option<String>, RequestError> {
        let invalid = |msg: &str| RequestError {
            id: Some(id.get().to_string()),
            code: 2,
            msg: msg.to_string(),
        };
        match request {
            Request::Subscribe(names) => {
                let (streams, keys) = split(self.shared.market, names)
                    .ok_or_else(|| invalid(control::INVALID_STREAM))?;
                link.subscribe(streams)
                    .map_err(|e| invalid(subscribe_error(&e)))?;
                if keys.is_empty() {
                    return Ok(Some("null".into()));
                }
                self.subscribe_keys(keys, id, link);
                Ok(None)
            }
            Request::Unsubscribe(names) => {
                let (streams, keys) = split(self.shared.market, names)
                    .ok_or_else(|| invalid(control::INVALID_STREAM))?;
                link.unsubscribe(&streams);
                if !keys.is_empty() {
                    let (feeds, hangup) = (link.user_feeds(), link.hangup());
                    for key in keys {
                        if feeds.remove(&key).is_some() {
                            self.shared.user_data.release(&key, &hangup);
                        }
                    }
                }
                Ok(Some("null".into()))
            }
            Request::SubscribeResuming(names, positions) => {
                if !self.format.combined {
                    return Err(invalid(control::RESUME_NEEDS_COMBINED));
                }
                let (streams, keys) = split(self.shared.market, names)
                    .ok_or_else(|| invalid(control::INVALID_STREAM))?;
                // A stream listed in resumeFrom is a stream, never a listen key.
                let market = self.shared.market;
                let positions: Vec<(String, u64)> = positions
                    .into_iter()
                    .map(|(stream, seq)| (market.hub_name(&stream), seq))
                    .collect();
                if positions.iter().any(|(p, _)| !streams.contains(p)) {
                    return Err(invalid(control::INVALID_RESUME_FROM));
                }
                let resume = ResumeFrom {
                    positions,
                    notice: Format::resync_notice,
                };
                self.set_resume(true, link);
                link.subscribe_resuming(streams, resume)
                    .map_err(|e| invalid(subscribe_error(&e)))?;
                if keys.is_empty() {
                    return Ok(Some("null".into()));
                }
                self.subscribe_keys(keys, id, link);
                Ok(None)
            }
            Request::SetResume(resume) => {
                if resume && !self.format.combined {
                    return Err(invalid(control::RESUME_NEEDS_COMBINED));
                }
                self.set_resume(resume, link);
                Ok(Some("null".into()))
            }
            Request::GetResume => Ok(Some(self.format.seq.to_string())),
            Request::ListSubscriptions => {
                let mut names: Vec<String> = link
                    .streams()
                    .map(|name| strip_namespace(name).to_string())
                    .collect();
                names.extend(link.private_names().iter().map(|n| n.to_string()));
                Ok(Some(
                    serde_json::to_string(&names).expect("strings serialize"),
                ))
            }
            Request::SetCombined(combined) => {
                if !combined && self.format.seq {
                    return Err(invalid(control::RESUME_NEEDS_COMBINED));
                }
                self.format.combined = combined;
                link.set_variant(self.shared.variants.of(self.format));
                Ok(Some("null".into()))
            }
            Request::GetCombined => Ok(Some(self.format.combined.to_string())),
        }
    }
}

impl Conversation for MarketConversation {
    fn on_text(&mut self, text: &str, link: &mut Link<'_>) -> Option<Closing> {
        let reply = control::parse(text).and_then(|(request, id)| {
            let result = self.execute(request, &id, link)?;
            Ok(result.map(|result| control::result_json(&result, &id)))
        });
        match reply {
            Ok(Some(json)) => {
                link.send(frame::text(&[json.as_bytes()]));
                None
            }
            Ok(None) => None,
            Err(error) => {
                link.count_error(&error.code.to_string());
                link.send(frame::text(&[control::error_json(&error).as_bytes()]));
                error
                    .closes_connection()
                    .then(|| Closing::new(close::POLICY, "Invalid JSON"))
            }
        }
    }

    /// Each removed stream is told with [`control::stream_removed_json`]: behind the events
    /// already queued while the connection keeps other streams, or before the close
    /// ([`Closing::streams_removed`]) when it holds nothing any more.
    fn on_streams_removed(&mut self, removed: &[Arc<str>], link: &mut Link<'_>) -> Option<Closing> {
        let closing = link.holds_nothing().then(Closing::streams_removed);
        for stream in removed {
            let notice = frame::text(&[control::stream_removed_json(stream).as_bytes()]);
            if closing.is_some() {
                // The close discards queued events; the notices go out before it.
                link.send(notice);
            } else {
                link.send_behind_events(notice);
            }
        }
        closing
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
