//! A cluster node's bus subscriptions follow its clients: it subscribes to the fanout subjects
//! of a stream when the stream gets its first local subscriber, and unsubscribes when the last
//! one leaves.
//!
//! The hub reports every such change of a stream ([`Hub::watch_interest`]); one task reconciles
//! them in order against the hub's current subscriber counts, so a change reported late or
//! twice does no harm. A stream's subjects come from the mappings that can publish it: its
//! name is matched against each mapping's `ws_topic` template and the values found fill the
//! `fanout_topic` template (a placeholder the stream name does not fix becomes `*`). Each bus
//! subscription passes on only the streams it was made for, so two overlapping subjects never
//! deliver one message twice.
//!
//! Private streams are followed per user instead: while a user has a connection here, the node
//! subscribes to that user's subject of every private mapping ([`bus::user_subject`]), and
//! passes on only that user's messages.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use parking_lot::RwLock;
use prometheus::IntGauge;
use tokio::sync::mpsc;

use crate::bus::{self, Bus, BusMessage, BusSink, SubscriptionId};
use crate::config::{Auth, Snapshot, Template};
use crate::hub::Hub;

/// How one mapping names its outputs: stream name and bus subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutRule {
    ws_topic: Template,
    fanout_topic: Template,
    /// The mapping publishes a private stream: per user, on [`bus::user_subject`]s.
    private: bool,
}

impl FanoutRule {
    /// Every mapping's rule in `snapshot` (templates that do not parse are left out: validation
    /// refuses such a config before it runs).
    pub fn all(snapshot: &Snapshot) -> Vec<FanoutRule> {
        snapshot
            .config
            .routes
            .iter()
            .flat_map(|route| &route.mappings)
            .filter_map(|mapping| {
                let ws_topic = Template::parse(&mapping.ws_topic).ok()?;
                let private = snapshot.streams.iter().any(|(name, spec)| {
                    spec.auth == Auth::Private && ws_topic.captures(name).is_some()
                });
                Some(FanoutRule {
                    ws_topic,
                    fanout_topic: Template::parse(&mapping.fanout_topic).ok()?,
                    private,
                })
            })
            .collect()
    }

    /// Every subject this mapping may publish on: its `fanout_topic` with each placeholder a
    /// wildcard.
    pub fn all_subjects(&self) -> String {
        self.fanout_topic
            .render(|_| Some("*"))
            .expect("every placeholder has a value")
    }

    /// The subject this mapping publishes `user`'s events on, if it publishes a private stream.
    fn user_subject(&self, user: &str) -> Option<String> {
        self.private
            .then(|| bus::user_subject(&self.all_subjects(), user))
    }

    /// The subject this mapping publishes `stream` on, if it can publish that public stream.
    pub(crate) fn subject(&self, stream: &str) -> Option<String> {
        if self.private {
            return None;
        }
        let values = self.ws_topic.captures(stream)?;
        let rendered = self.fanout_topic.render(|name| {
            Some(
                values
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or("*", |(_, v)| *v),
            )
        });
        rendered.ok()
    }
}

/// What the reconciling task is told.
enum Change {
    /// A stream's subscriber count went from or to zero.
    Stream(Arc<str>),
    /// A user's first private subscription arrived or the last one left.
    User(Arc<str>),
    /// The mappings changed: every subject is recomputed.
    Rules(Arc<Vec<FanoutRule>>),
}

/// Handle of the task that keeps the node's bus subscriptions to its clients' interest.
#[derive(Clone)]
pub struct Interest {
    changes: mpsc::UnboundedSender<Change>,
}

impl Interest {
    /// Starts the task and makes `hub` report its streams' interest to it; `gauge` counts the
    /// subjects subscribed.
    pub fn start(
        hub: Arc<Hub>,
        bus: Arc<dyn Bus>,
        rules: Vec<FanoutRule>,
        gauge: IntGauge,
    ) -> Interest {
        let (changes, receiver) = mpsc::unbounded_channel();
        let interest = Interest { changes };
        let reporter = interest.clone();
        hub.watch_interest(Arc::new(move |stream: &Arc<str>| {
            let _ = reporter.changes.send(Change::Stream(Arc::clone(stream)));
        }));
        let reporter = interest.clone();
        hub.users().watch(Arc::new(move |user: &Arc<str>| {
            let _ = reporter.changes.send(Change::User(Arc::clone(user)));
        }));
        let task = Reconciler {
            hub,
            bus,
            rules: Arc::new(rules),
            watched: HashMap::new(),
            subjects: HashMap::new(),
            users: HashMap::new(),
            gauge,
        };
        tokio::spawn(task.run(receiver));
        interest
    }

    /// Uses the mappings of `rules` from now on.
    pub fn set_rules(&self, rules: Vec<FanoutRule>) {
        let _ = self.changes.send(Change::Rules(Arc::new(rules)));
    }
}

/// One bus subscription and the streams it was made for.
struct SubjectSubscription {
    id: SubscriptionId,
    streams: Arc<RwLock<HashSet<Arc<str>>>>,
}

struct Reconciler {
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    rules: Arc<Vec<FanoutRule>>,
    /// The subjects of each stream with local subscribers.
    watched: HashMap<Arc<str>, Vec<String>>,
    subjects: HashMap<String, SubjectSubscription>,
    /// The bus subscriptions of each user with local private subscriptions.
    users: HashMap<Arc<str>, Vec<SubscriptionId>>,
    gauge: IntGauge,
}

impl Reconciler {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Change>) {
        while let Some(change) = changes.recv().await {
            match change {
                Change::Stream(stream) => self.reconcile(stream).await,
                Change::User(user) => self.reconcile_user(user).await,
                Change::Rules(rules) => {
                    self.rules = rules;
                    let users: Vec<Arc<str>> = self.users.keys().cloned().collect();
                    for user in users {
                        self.unwatch_user(&user).await;
                        self.reconcile_user(user).await;
                    }
                    // Only streams whose subjects changed are resubscribed.
                    let moved: Vec<Arc<str>> = self
                        .watched
                        .iter()
                        .filter(|(stream, subjects)| self.subjects_of(stream) != **subjects)
                        .map(|(stream, _)| Arc::clone(stream))
                        .collect();
                    for stream in moved {
                        self.unwatch(&stream).await;
                        self.reconcile(stream).await;
                    }
                }
            }
        }
    }

    async fn reconcile(&mut self, stream: Arc<str>) {
        let wanted = self
            .hub
            .topic(&stream)
            .is_some_and(|topic| topic.subscribers() > 0);
        match (wanted, self.watched.contains_key(&stream)) {
            (true, false) => self.watch(stream).await,
            (false, true) => self.unwatch(&stream).await,
            _ => {}
        }
        self.set_gauge();
    }

    fn set_gauge(&self) {
        let per_user: usize = self.users.values().map(Vec::len).sum();
        self.gauge.set((self.subjects.len() + per_user) as i64);
    }

    async fn reconcile_user(&mut self, user: Arc<str>) {
        match (self.hub.users().has(&user), self.users.contains_key(&user)) {
            (true, false) => self.watch_user(user).await,
            (false, true) => self.unwatch_user(&user).await,
            _ => {}
        }
        self.set_gauge();
    }

    async fn watch_user(&mut self, user: Arc<str>) {
        let mut subjects: Vec<String> = self
            .rules
            .iter()
            .filter_map(|rule| rule.user_subject(&user))
            .collect();
        subjects.sort();
        subjects.dedup();
        let mut ids = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let sink = Arc::new(UserFilter {
                user: Arc::clone(&user),
                hub: Arc::clone(&self.hub),
            });
            match self.bus.subscribe(&subject, sink).await {
                Ok(id) => ids.push(id),
                Err(e) => tracing::warn!(%subject, error = %e, "bus subscribe failed"),
            }
        }
        self.users.insert(user, ids);
    }

    async fn unwatch_user(&mut self, user: &Arc<str>) {
        for id in self.users.remove(user).unwrap_or_default() {
            let _ = self.bus.unsubscribe(id).await;
        }
    }

    /// The subjects `stream` is published on, sorted, each once.
    fn subjects_of(&self, stream: &str) -> Vec<String> {
        let mut subjects: Vec<String> = self
            .rules
            .iter()
            .filter_map(|rule| rule.subject(stream))
            .collect();
        subjects.sort();
        subjects.dedup();
        subjects
    }

    async fn watch(&mut self, stream: Arc<str>) {
        let subjects = self.subjects_of(&stream);
        for subject in &subjects {
            if let Some(existing) = self.subjects.get(subject) {
                existing.streams.write().insert(Arc::clone(&stream));
                continue;
            }
            let streams = Arc::new(RwLock::new(HashSet::from([Arc::clone(&stream)])));
            let sink = Arc::new(StreamFilter {
                streams: Arc::clone(&streams),
                hub: Arc::clone(&self.hub),
            });
            match self.bus.subscribe(subject, sink).await {
                Ok(id) => {
                    tracing::debug!(%stream, %subject, "subscribed to the bus");
                    self.subjects
                        .insert(subject.clone(), SubjectSubscription { id, streams });
                }
                Err(e) => tracing::warn!(%stream, %subject, error = %e, "bus subscribe failed"),
            }
        }
        self.watched.insert(stream, subjects);
    }

    async fn unwatch(&mut self, stream: &Arc<str>) {
        let Some(subjects) = self.watched.remove(stream) else {
            return;
        };
        for subject in subjects {
            let Some(subscription) = self.subjects.get(&subject) else {
                continue;
            };
            let empty = {
                let mut streams = subscription.streams.write();
                streams.remove(stream);
                streams.is_empty()
            };
            if empty {
                let subscription = self.subjects.remove(&subject).expect("looked up above");
                let _ = self.bus.unsubscribe(subscription.id).await;
                tracing::debug!(%stream, %subject, "unsubscribed from the bus");
            }
        }
    }
}

/// Passes on to the hub the messages of the streams one subscription was made for.
struct StreamFilter {
    streams: Arc<RwLock<HashSet<Arc<str>>>>,
    hub: Arc<Hub>,
}

impl BusSink for StreamFilter {
    fn deliver(&self, mut messages: Vec<BusMessage>) -> BoxFuture<'_, ()> {
        {
            let streams = self.streams.read();
            messages.retain(|m| streams.contains(&m.stream));
        }
        self.hub.deliver(messages)
    }
}

/// Passes on to the hub the private messages of one user.
struct UserFilter {
    user: Arc<str>,
    hub: Arc<Hub>,
}

impl BusSink for UserFilter {
    fn deliver(&self, mut messages: Vec<BusMessage>) -> BoxFuture<'_, ()> {
        messages.retain(|m| m.user_id.as_deref() == Some(&*self.user));
        self.hub.deliver(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ws: &str, fanout: &str) -> FanoutRule {
        FanoutRule {
            ws_topic: Template::parse(ws).unwrap(),
            fanout_topic: Template::parse(fanout).unwrap(),
            private: false,
        }
    }

    #[test]
    fn a_stream_maps_to_the_subject_its_mapping_publishes_on() {
        let trade = rule("{symbol}@trade", "md.{symbol}.trade");
        assert_eq!(trade.subject("btcusdt@trade").unwrap(), "md.btcusdt.trade");
        assert_eq!(trade.subject("btcusdt@depth"), None);
        let all = rule("!miniTicker@arr", "md.{symbol}.miniticker");
        assert_eq!(all.subject("!miniTicker@arr").unwrap(), "md.*.miniticker");
        assert_eq!(trade.all_subjects(), "md.*.trade");
        assert_eq!(trade.user_subject("alice"), None);
    }

    #[test]
    fn a_private_mapping_publishes_per_user_and_no_stream() {
        let user_data = FanoutRule {
            private: true,
            ..rule("userData", "account.events")
        };
        assert_eq!(user_data.subject("userData"), None);
        assert_eq!(
            user_data.user_subject("alice").unwrap(),
            "account.events.alice"
        );
    }
}
