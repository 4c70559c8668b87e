//! Private deliveries: a user's own events (orders, fills, balances), delivered to that user's
//! connections only.
//!
//! A connection takes a user's events through a [`UserSubscription`]: the user id the gateway
//! verified (a listen key's owner, a signed request's key owner), a name that is unique on the
//! connection (the listen key, or the WebSocket API's subscription id), the private stream it
//! takes (`userData` in Binance's format, `hashkey:userData` in HashKey's: one user's events
//! are mapped once per format) and a [`Wrap`], which
//! frames each event the way that subscription asked (unwrapped, `{"stream":<listenKey>,..}`,
//! `{"subscriptionId":N,..}`). A private event usually has one or two receivers, each wrapping it
//! its own way, so its frames are built per receiver rather than cached per variant.
//!
//! The index is sharded by user id; a delivery read-locks one shard. The first subscription of a
//! user and the removal of its last are reported to the interest watcher, so a cluster node
//! subscribes to a user's bus subject only while that user is connected to it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::RwLock;
use prometheus::IntGauge;

use super::outbox::{ConnId, Outbox, Pushed};
use super::topic::{FanOut, InterestWatcher};
use super::Delivery;

/// Number of shards of the user index.
const SHARDS: usize = 64;

/// Frames one private event for one subscription.
pub trait Wrap: Send + Sync + 'static {
    /// The complete WebSocket frame carrying `delivery` to this subscription.
    fn frame(&self, delivery: &Delivery) -> Bytes;
}

/// One connection's subscription to one user's events.
#[derive(Clone)]
pub struct UserSubscription {
    /// The verified user id.
    pub user: Arc<str>,
    /// Unique on its connection: the listen key, or a subscription id.
    pub name: Arc<str>,
    /// The private stream whose events it takes (a mapping's `ws_topic`).
    pub stream: Arc<str>,
    /// How each event is framed.
    pub wrap: Arc<dyn Wrap>,
}

struct Receiver {
    outbox: Arc<Outbox>,
    name: Arc<str>,
    stream: Arc<str>,
    wrap: Arc<dyn Wrap>,
}

type Shard = RwLock<HashMap<Arc<str>, Vec<Receiver>>>;

/// Every user with a subscription on this node, and their receivers.
pub struct Users {
    shards: Box<[Shard]>,
    hasher: RandomState,
    users: AtomicUsize,
    gauge: IntGauge,
    watcher: OnceLock<InterestWatcher>,
}

impl Users {
    /// An empty index; `gauge` counts the subscriptions it holds.
    pub fn new(gauge: IntGauge) -> Self {
        Users {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            users: AtomicUsize::new(0),
            gauge,
            watcher: OnceLock::new(),
        }
    }

    /// Tells `watcher` the user id whenever a user's first subscription arrives or last one
    /// leaves (set once).
    pub fn watch(&self, watcher: InterestWatcher) {
        let _ = self.watcher.set(watcher);
    }

    fn shard(&self, user: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(user) as usize % SHARDS]
    }

    /// Adds `subscription` for `outbox`; false if the connection already has one of that name.
    pub fn subscribe(&self, outbox: &Arc<Outbox>, subscription: &UserSubscription) -> bool {
        let first = {
            let mut shard = self.shard(&subscription.user).write();
            let receivers = shard.entry(Arc::clone(&subscription.user)).or_default();
            if receivers
                .iter()
                .any(|r| r.outbox.id() == outbox.id() && r.name == subscription.name)
            {
                return false;
            }
            receivers.push(Receiver {
                outbox: Arc::clone(outbox),
                name: Arc::clone(&subscription.name),
                stream: Arc::clone(&subscription.stream),
                wrap: Arc::clone(&subscription.wrap),
            });
            receivers.len() == 1
        };
        self.gauge.inc();
        if first {
            self.users.fetch_add(1, Ordering::Relaxed);
            self.interest_changed(&subscription.user);
        }
        true
    }

    /// Removes connection `id`'s subscription `name` to `user`; false if there was none.
    pub fn unsubscribe(&self, user: &Arc<str>, id: ConnId, name: &str) -> bool {
        let last = {
            let mut shard = self.shard(user).write();
            let Some(receivers) = shard.get_mut(user) else {
                return false;
            };
            let Some(index) = receivers
                .iter()
                .position(|r| r.outbox.id() == id && &*r.name == name)
            else {
                return false;
            };
            receivers.swap_remove(index);
            let last = receivers.is_empty();
            if last {
                shard.remove(user);
            }
            last
        };
        self.gauge.dec();
        if last {
            self.users.fetch_sub(1, Ordering::Relaxed);
            self.interest_changed(user);
        }
        true
    }

    fn interest_changed(&self, user: &Arc<str>) {
        if let Some(watcher) = self.watcher.get() {
            watcher(user);
        }
    }

    /// True while `user` has a subscription on this node.
    pub fn has(&self, user: &str) -> bool {
        self.shard(user).read().contains_key(user)
    }

    /// Number of users with a subscription on this node.
    pub fn len(&self) -> usize {
        self.users.load(Ordering::Relaxed)
    }

    /// True when no user has a subscription on this node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `delivery` for every receiver of `user` that takes its stream, each framed by its
    /// wrap, and wakes them.
    pub fn deliver(&self, user: &str, delivery: &Delivery, variants: usize) -> FanOut {
        let mut counts = FanOut::default();
        let shard = self.shard(user).read();
        let Some(receivers) = shard.get(user) else {
            return counts;
        };
        for receiver in receivers.iter().filter(|r| r.stream == delivery.stream) {
            let framed = Arc::new(delivery.prebuilt(receiver.wrap.frame(delivery), variants));
            match receiver.outbox.push(&framed) {
                Pushed::Queued => counts.queued += 1,
                Pushed::Overflowed => counts.overflowed += 1,
                Pushed::Refused => counts.refused += 1,
                // A private event is pushed unlimited, closing on overflow: never held,
                // merged or dropped.
                Pushed::Held | Pushed::Coalesced | Pushed::Dropped => {
                    unreachable!("private events are never limited")
                }
            }
            receiver.outbox.wake_if_due();
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicU64;

    struct Tagged(&'static str);

    impl Wrap for Tagged {
        fn frame(&self, delivery: &Delivery) -> Bytes {
            let mut frame = self.0.as_bytes().to_vec();
            frame.extend_from_slice(&delivery.payload);
            Bytes::from(frame)
        }
    }

    fn subscription(user: &str, name: &str, tag: &'static str) -> UserSubscription {
        UserSubscription {
            user: Arc::from(user),
            name: Arc::from(name),
            stream: Arc::from("userData"),
            wrap: Arc::new(Tagged(tag)),
        }
    }

    fn event(payload: &'static str) -> Delivery {
        Delivery::new(Arc::from("userData"), 1, 0, 0, Bytes::from(payload), 2)
    }

    fn frames(outbox: &Outbox, variant_slot: usize) -> Vec<Bytes> {
        let mut got = VecDeque::new();
        outbox.take_all(&mut got);
        got.iter()
            .map(|d| d.cached(variant_slot).expect("prebuilt").clone())
            .collect()
    }

    #[test]
    fn a_users_events_reach_only_that_users_receivers_each_in_its_wrap() {
        let users = Users::new(IntGauge::new("g", "g").unwrap());
        let alice_raw = Outbox::new(1, 1 << 20);
        let alice_sub = Outbox::new(2, 1 << 20);
        let bob = Outbox::new(3, 1 << 20);
        assert!(users.subscribe(&alice_raw, &subscription("alice", "k1", "raw:")));
        assert!(users.subscribe(&alice_sub, &subscription("alice", "0", "sub0:")));
        assert!(users.subscribe(&bob, &subscription("bob", "k2", "raw:")));
        assert!(!users.subscribe(&bob, &subscription("bob", "k2", "raw:")));
        assert_eq!(users.len(), 2);

        let counts = users.deliver("alice", &event("{\"a\":1}"), 2);
        assert_eq!(counts.queued, 2);
        assert_eq!(frames(&alice_raw, 1), [Bytes::from("raw:{\"a\":1}")]);
        assert_eq!(frames(&alice_sub, 0), [Bytes::from("sub0:{\"a\":1}")]);
        assert!(frames(&bob, 0).is_empty());
        assert_eq!(users.deliver("carol", &event("{}"), 2).queued, 0);
    }

    #[test]
    fn a_receiver_takes_only_the_events_of_its_private_stream() {
        let users = Users::new(IntGauge::new("g", "g").unwrap());
        let binance = Outbox::new(1, 1 << 20);
        let hashkey = Outbox::new(2, 1 << 20);
        assert!(users.subscribe(&binance, &subscription("alice", "k1", "b:")));
        let mut other = subscription("alice", "k1", "h:");
        other.stream = Arc::from("hashkey:userData");
        assert!(users.subscribe(&hashkey, &other));

        assert_eq!(users.deliver("alice", &event("{}"), 2).queued, 1);
        let hashkey_event =
            Delivery::new(Arc::from("hashkey:userData"), 1, 0, 0, Bytes::from("[]"), 2);
        assert_eq!(users.deliver("alice", &hashkey_event, 2).queued, 1);
        assert_eq!(frames(&binance, 0), [Bytes::from("b:{}")]);
        assert_eq!(frames(&hashkey, 0), [Bytes::from("h:[]")]);
    }

    #[test]
    fn the_watcher_hears_a_users_first_and_last_subscription() {
        let users = Users::new(IntGauge::new("g", "g").unwrap());
        let changes = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&changes);
        users.watch(Arc::new(move |user: &Arc<str>| {
            assert_eq!(&**user, "alice");
            seen.fetch_add(1, Ordering::Relaxed);
        }));
        let a = Outbox::new(1, 1024);
        let b = Outbox::new(2, 1024);
        users.subscribe(&a, &subscription("alice", "k", "")); // first: reported
        users.subscribe(&b, &subscription("alice", "k", ""));
        assert!(users.unsubscribe(&Arc::from("alice"), 1, "k"));
        assert!(!users.unsubscribe(&Arc::from("alice"), 1, "k"));
        assert_eq!(changes.load(Ordering::Relaxed), 1);
        assert!(users.has("alice"));
        users.unsubscribe(&Arc::from("alice"), 2, "k"); // last: reported
        assert_eq!(changes.load(Ordering::Relaxed), 2);
        assert!(!users.has("alice"));
        assert!(users.is_empty());
    }
}
