//! A connection's heartbeat timer, following the rule its dialect chose ([`Heartbeat`]).

use std::time::Duration;

use tokio::time::Instant;

use super::dialect::Heartbeat;
use crate::util::now_us;

/// What the heartbeat timer asks of the session.
#[derive(Debug, PartialEq, Eq)]
pub enum Beat {
    /// Nothing due yet.
    Quiet,
    /// Send this ping now.
    Ping(bytes::Bytes),
    /// The client missed its heartbeat: end the connection.
    Missed,
}

/// Heartbeat state of one connection.
pub struct Keepalive {
    rule: Rule,
    /// Server pings: when the next one goes out.
    next_ping: Instant,
    /// Server pings: when an unanswered ping ends the connection. Client heartbeats: when the
    /// next one is due at the latest.
    due: Option<Instant>,
    /// Server pings: the time stamp the unanswered ping carried (its payload is rebuilt from it
    /// to check a pong, rather than kept per connection).
    pinged_ms: i64,
}

/// A [`Heartbeat`] in milliseconds: every connection keeps one, so it is kept small.
#[derive(Clone, Copy)]
enum Rule {
    ServerPings {
        every_ms: u32,
        answer_ms: u32,
        ping: fn(i64) -> bytes::Bytes,
        client_pings_answer: bool,
    },
    ClientPings {
        within_ms: u32,
    },
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

fn after(now: Instant, ms: u32) -> Instant {
    now + Duration::from_millis(u64::from(ms))
}

impl Keepalive {
    /// A timer for a connection opened at `now`.
    pub fn new(heartbeat: Heartbeat, now: Instant) -> Self {
        match heartbeat {
            Heartbeat::ServerPings {
                every,
                answer_within,
                ping,
                client_pings_answer,
            } => Keepalive {
                rule: Rule::ServerPings {
                    every_ms: millis(every),
                    answer_ms: millis(answer_within),
                    ping,
                    client_pings_answer,
                },
                next_ping: now + every,
                due: None,
                pinged_ms: 0,
            },
            Heartbeat::ClientPings { within } => Keepalive {
                rule: Rule::ClientPings {
                    within_ms: millis(within),
                },
                next_ping: now,
                due: Some(now + within),
                pinged_ms: 0,
            },
        }
    }

    /// When [`on_timer`](Self::on_timer) next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        match self.rule {
            Rule::ServerPings { .. } => Some(match self.due {
                Some(due) => due.min(self.next_ping),
                None => self.next_ping,
            }),
            Rule::ClientPings { .. } => self.due,
        }
    }

    /// What is due at `now`.
    pub fn on_timer(&mut self, now: Instant) -> Beat {
        if self.due.is_some_and(|due| now >= due) {
            return Beat::Missed;
        }
        match self.rule {
            Rule::ServerPings {
                every_ms,
                answer_ms,
                ping,
                ..
            } if now >= self.next_ping => {
                self.due.get_or_insert(after(now, answer_ms));
                self.next_ping = after(now, every_ms);
                self.pinged_ms = now_us() / 1000;
                Beat::Ping(ping(self.pinged_ms))
            }
            _ => Beat::Quiet,
        }
    }

    /// A WebSocket pong arrived: it answers the server's pings when it carries the payload of
    /// the latest one (RFC 6455 §5.5.3). Any other pong is unsolicited and changes nothing, so
    /// a client cannot stay connected by sending pongs without reading.
    pub fn on_pong(&mut self, payload: &[u8]) {
        if let Rule::ServerPings { ping, .. } = self.rule {
            if self.due.is_some() && ping_payload(&ping(self.pinged_ms)) == payload {
                self.due = None;
            }
        }
    }

    /// The client sent a heartbeat its dialect recognises (a WebSocket ping, a JSON ping or
    /// pong): it answers the server's pings, or restarts the client's heartbeat window.
    pub fn on_heartbeat(&mut self, now: Instant) {
        match self.rule {
            Rule::ServerPings { .. } => self.due = None,
            Rule::ClientPings { within_ms } => self.due = Some(after(now, within_ms)),
        }
    }

    /// A WebSocket ping from the client: a heartbeat where the client is the one who pings, or
    /// where the dialect takes any heartbeat as an answer to its pings.
    pub fn on_client_ping(&mut self, now: Instant) {
        match self.rule {
            Rule::ClientPings { .. }
            | Rule::ServerPings {
                client_pings_answer: true,
                ..
            } => self.on_heartbeat(now),
            Rule::ServerPings { .. } => {}
        }
    }
}

/// The payload of a ping frame (control frames carry at most 125 bytes: a 2-byte header).
fn ping_payload(frame: &[u8]) -> &[u8] {
    frame.get(2..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(ms: i64) -> bytes::Bytes {
        bytes::Bytes::from(ms.to_string())
    }

    const SERVER: Heartbeat = Heartbeat::ServerPings {
        every: Duration::from_secs(20),
        answer_within: Duration::from_secs(60),
        ping,
        client_pings_answer: false,
    };

    #[test]
    fn server_pings_every_interval_and_closes_after_an_unanswered_minute() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(SERVER, start);
        assert_eq!(keepalive.deadline(), Some(start + Duration::from_secs(20)));
        assert_eq!(keepalive.on_timer(start), Beat::Quiet);
        let at = |s| start + Duration::from_secs(s);
        assert!(matches!(keepalive.on_timer(at(20)), Beat::Ping(_)));
        assert!(matches!(keepalive.on_timer(at(40)), Beat::Ping(_)));
        assert!(matches!(keepalive.on_timer(at(60)), Beat::Ping(_)));
        assert_eq!(keepalive.deadline(), Some(at(80)));
        assert_eq!(
            keepalive.on_timer(at(80)),
            Beat::Missed,
            "60 s after the first ping"
        );
    }

    fn payload_of(beat: Beat) -> Vec<u8> {
        match beat {
            Beat::Ping(frame) => ping_payload(&frame).to_vec(),
            other => panic!("expected a ping, got {other:?}"),
        }
    }

    #[test]
    fn only_a_pong_with_the_pings_payload_answers_it() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut keepalive = Keepalive::new(SERVER, start);
        let mut wrong = payload_of(keepalive.on_timer(at(20)));
        wrong.push(b'0');
        keepalive.on_pong(b"");
        keepalive.on_pong(&wrong);
        assert_eq!(keepalive.deadline(), Some(at(40)));
        for s in [40, 60] {
            payload_of(keepalive.on_timer(at(s)));
            keepalive.on_pong(b"");
            keepalive.on_pong(&wrong);
        }
        assert_eq!(
            keepalive.on_timer(at(80)),
            Beat::Missed,
            "unsolicited pongs kept it alive"
        );
    }

    #[test]
    fn a_pong_answers_and_an_early_pong_changes_nothing() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut keepalive = Keepalive::new(SERVER, start);
        keepalive.on_pong(b"");
        let sent = payload_of(keepalive.on_timer(at(20)));
        keepalive.on_pong(&sent);
        assert_eq!(keepalive.deadline(), Some(at(40)));
        assert!(matches!(keepalive.on_timer(at(40)), Beat::Ping(_)));
        assert!(matches!(keepalive.on_timer(at(60)), Beat::Ping(_)));
        assert!(matches!(keepalive.on_timer(at(80)), Beat::Ping(_)));
        assert_eq!(
            keepalive.on_timer(at(100)),
            Beat::Missed,
            "60 s after the ping at 40"
        );
    }

    #[test]
    fn a_client_ping_answers_only_where_the_dialect_says_so() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut strict = Keepalive::new(SERVER, start);
        let Heartbeat::ServerPings {
            every,
            answer_within,
            ping,
            ..
        } = SERVER
        else {
            unreachable!()
        };
        let lenient_rule = Heartbeat::ServerPings {
            every,
            answer_within,
            ping,
            client_pings_answer: true,
        };
        let mut lenient = Keepalive::new(lenient_rule, start);
        for keepalive in [&mut strict, &mut lenient] {
            payload_of(keepalive.on_timer(at(20)));
            keepalive.on_client_ping(at(21));
        }
        assert_eq!(lenient.deadline(), Some(at(40)), "answered");
        assert!(matches!(lenient.on_timer(at(80)), Beat::Ping(_)));
        assert_eq!(
            strict.on_timer(at(80)),
            Beat::Missed,
            "a client ping is no pong"
        );
    }

    #[test]
    fn client_heartbeats_must_keep_coming() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let rule = Heartbeat::ClientPings {
            within: Duration::from_secs(30),
        };
        let mut keepalive = Keepalive::new(rule, start);
        assert_eq!(keepalive.on_timer(at(29)), Beat::Quiet);
        keepalive.on_heartbeat(at(29));
        keepalive.on_pong(b"");
        assert_eq!(keepalive.deadline(), Some(at(59)));
        keepalive.on_client_ping(at(50));
        assert_eq!(keepalive.on_timer(at(79)), Beat::Quiet);
        assert_eq!(keepalive.on_timer(at(80)), Beat::Missed);
    }
}
