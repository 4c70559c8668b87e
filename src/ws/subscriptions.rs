//! A connection's streams: which hub topics its outbox is subscribed to, in the order the
//! client asked for them, and the rules every dialect's subscribe shares (no stream twice, a
//! cap per connection, unknown streams refused or accepted silently).

use std::collections::HashSet;
use std::sync::Arc;

use super::resume::ResumeFrom;
use crate::hub::{Hub, Outbox, Topic, TopicId, UserSubscription};

/// Why a subscription was refused; nothing of its batch was subscribed. Each dialect says it in
/// its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    /// No topic serves this stream (and the node does not accept unknown streams).
    Unknown(String),
    /// The connection would hold more streams than the node allows.
    TooMany,
}

/// What the node serves, as a connection's subscribe sees it.
pub struct Catalog<'a> {
    hub: &'a Arc<Hub>,
    max_streams: usize,
    accept_unknown: bool,
}

impl<'a> Catalog<'a> {
    /// The streams of `hub`, at most `max_streams` per connection; with `accept_unknown`, a
    /// stream no topic serves is accepted and never delivers (as Binance does).
    pub fn new(hub: &'a Arc<Hub>, max_streams: usize, accept_unknown: bool) -> Self {
        Catalog {
            hub,
            max_streams,
            accept_unknown,
        }
    }

    /// The streams of `names` a connection already holding `current` would add, in order, each
    /// once; refused as a whole when one is unknown or the total passes the cap.
    pub fn plan(&self, current: &Streams, names: Vec<String>) -> Result<Planned, SubscribeError> {
        let held: HashSet<&str> = current.names().collect();
        let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
        let mut added = Vec::with_capacity(names.len());
        for name in &names {
            if held.contains(name.as_str()) || !seen.insert(name) {
                continue;
            }
            match self.hub.topic(name) {
                Some(topic) => added.push(Stream::Live(topic)),
                None if self.accept_unknown => added.push(Stream::Silent(name.as_str().into())),
                None => return Err(SubscribeError::Unknown(name.clone())),
            }
        }
        if current.len() + added.len() > self.max_streams {
            return Err(SubscribeError::TooMany);
        }
        Ok(Planned {
            streams: added,
            resume: None,
        })
    }

    /// Adds to `planned` a private subscription (a user's events, under a name unique on the
    /// connection), for a connection already holding `current`; refused when the connection
    /// would hold too many streams. A name already held or planned is left out.
    pub fn plan_user(
        &self,
        current: &Streams,
        planned: &mut Planned,
        subscription: UserSubscription,
    ) -> Result<(), SubscribeError> {
        let name = &*subscription.name;
        if current
            .names()
            .chain(planned.names())
            .any(|held| held == name)
        {
            return Ok(());
        }
        if current.len() + planned.streams.len() + 1 > self.max_streams {
            return Err(SubscribeError::TooMany);
        }
        planned.streams.push(Stream::User(Box::new(UserStream {
            hub: Arc::clone(self.hub),
            subscription,
        })));
        Ok(())
    }
}

/// Streams checked against the catalog, not subscribed yet, and the positions some of them
/// resume from.
#[derive(Default)]
pub struct Planned {
    streams: Vec<Stream>,
    resume: Option<ResumeFrom>,
}

impl Planned {
    /// The planned streams' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.streams.iter().map(Stream::name)
    }

    /// Resumes the planned streams of `resume` once they are subscribed (the positions of
    /// streams not planned, e.g. already held, are left out: those flow live already).
    pub fn resume_from(&mut self, mut resume: ResumeFrom) {
        resume.positions.retain(|(name, _)| {
            self.streams
                .iter()
                .any(|s| matches!(s, Stream::Live(topic) if **topic.name() == **name))
        });
        if !resume.positions.is_empty() {
            self.resume = Some(resume);
        }
    }

    /// The resume positions, taken out (subscribing does not start them).
    pub fn take_resume(&mut self) -> Option<ResumeFrom> {
        self.resume.take()
    }
}

/// A private subscription: a user's events, through the hub's user index.
struct UserStream {
    hub: Arc<Hub>,
    subscription: UserSubscription,
}

/// One stream of a connection.
enum Stream {
    /// A stream a topic serves.
    Live(Arc<Topic>),
    /// A well-formed stream no topic serves, accepted silently in compatibility mode.
    Silent(Box<str>),
    /// A user's private events (boxed: rare, and a held stream stays three words).
    User(Box<UserStream>),
}

impl Stream {
    fn name(&self) -> &str {
        match self {
            Stream::Live(topic) => topic.name(),
            Stream::Silent(name) => name,
            Stream::User(user) => &user.subscription.name,
        }
    }

    fn subscribe(&self, outbox: &Arc<Outbox>) {
        match self {
            Stream::Live(topic) => {
                topic.subscribe(outbox);
            }
            Stream::User(user) => {
                user.hub.users().subscribe(outbox, &user.subscription);
            }
            Stream::Silent(_) => {}
        }
    }

    fn unsubscribe(&self, outbox: &Outbox) {
        match self {
            Stream::Live(topic) => {
                topic.unsubscribe(outbox.id());
            }
            Stream::User(user) => {
                let subscription = &user.subscription;
                user.hub
                    .users()
                    .unsubscribe(&subscription.user, outbox.id(), &subscription.name);
            }
            Stream::Silent(_) => {}
        }
    }
}

/// The streams one connection's outbox is subscribed to.
#[derive(Default)]
pub struct Streams {
    held: Vec<Stream>,
}

impl Streams {
    /// Number of streams held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when no stream is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The streams' names, in the order they were subscribed.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.held.iter().map(Stream::name)
    }

    /// Subscribes `outbox` to the planned streams.
    pub fn add(&mut self, planned: Planned, outbox: &Arc<Outbox>) {
        for stream in &planned.streams {
            stream.subscribe(outbox);
        }
        if self.held.is_empty() {
            // A connection's first streams keep the planned list as it is (sized to fit).
            self.held = planned.streams;
        } else {
            self.held.extend(planned.streams);
        }
    }

    /// Unsubscribes `outbox` from every stream named in `names` it holds.
    pub fn remove(&mut self, names: &[String], outbox: &Outbox) {
        let remove: HashSet<&str> = names.iter().map(String::as_str).collect();
        self.held.retain(|stream| {
            let keep = !remove.contains(stream.name());
            if !keep {
                stream.unsubscribe(outbox);
            }
            keep
        });
    }

    /// Drops the streams served by `retired` topics (the hub already dropped the outbox from
    /// them); returns the names of those this connection held, in the order it held them. A
    /// stream of the same name subscribed since (a newer topic) is kept.
    pub fn forget(&mut self, retired: &[TopicId]) -> Vec<Arc<str>> {
        let mut dropped = Vec::new();
        self.held.retain(|stream| match stream {
            Stream::Live(topic) if retired.contains(&topic.id()) => {
                dropped.push(Arc::clone(topic.name()));
                false
            }
            _ => true,
        });
        dropped
    }

    /// Unsubscribes `outbox` from everything (the connection ends).
    pub fn clear(&mut self, outbox: &Outbox) {
        for stream in self.held.drain(..) {
            stream.unsubscribe(outbox);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::FrameVariants;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn forget_drops_only_the_retired_topics_streams() {
        let hub = Arc::new(Hub::new(Arc::new(Metrics::new()), 1, FrameVariants::new()));
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a@trade"), Arc::from("b@trade"));
        hub.set_streams(crate::hub::flow::unlimited([&a, &b]));
        let catalog = Catalog::new(&hub, 10, false);
        let outbox = Outbox::new(1, 1 << 20);
        let mut streams = Streams::default();
        let planned = catalog.plan(&streams, vec!["a@trade".into(), "b@trade".into()]);
        streams.add(planned.unwrap(), &outbox);

        hub.set_streams(crate::hub::flow::unlimited([&b]));
        let retired = outbox.take_removed();
        assert_eq!(streams.forget(&retired), [Arc::clone(&a)]);
        assert_eq!(streams.names().collect::<Vec<_>>(), ["b@trade"]);

        // Declared and subscribed again: the old topic's notice no longer applies to it.
        hub.set_streams(crate::hub::flow::unlimited([&a, &b]));
        let planned = catalog.plan(&streams, vec!["a@trade".into()]);
        streams.add(planned.unwrap(), &outbox);
        assert!(streams.forget(&retired).is_empty());
        assert_eq!(streams.names().collect::<Vec<_>>(), ["b@trade", "a@trade"]);
    }
}
