//! A connection's private subscriptions made after it opened, possibly from another task (a
//! WebSocket API request answered once its key was looked up). They end with the connection:
//! the session closes the set, and a subscription attempted after that is refused.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::hub::{Hub, Outbox, UserSubscription};

/// The private subscriptions of one connection.
pub struct UserFeeds {
    hub: Arc<Hub>,
    outbox: Arc<Outbox>,
    /// `None` once the connection ended.
    held: Mutex<Option<Vec<UserSubscription>>>,
}

impl UserFeeds {
    pub(crate) fn new(hub: Arc<Hub>, outbox: Arc<Outbox>) -> Arc<UserFeeds> {
        Arc::new(UserFeeds {
            hub,
            outbox,
            held: Mutex::new(Some(Vec::new())),
        })
    }

    /// Subscribes the connection to `subscription`; false if the connection ended or already
    /// holds a subscription of that name.
    pub fn add(&self, subscription: UserSubscription) -> bool {
        let mut held = self.held.lock();
        let Some(held) = held.as_mut() else {
            return false;
        };
        if held.iter().any(|s| s.name == subscription.name) {
            return false;
        }
        self.hub.users().subscribe(&self.outbox, &subscription);
        held.push(subscription);
        true
    }

    /// Ends the subscription named `name`; the subscription, if there was one.
    pub fn remove(&self, name: &str) -> Option<UserSubscription> {
        let mut held = self.held.lock();
        let held = held.as_mut()?;
        let index = held.iter().position(|s| &*s.name == name)?;
        let subscription = held.swap_remove(index);
        self.hub
            .users()
            .unsubscribe(&subscription.user, self.outbox.id(), name);
        Some(subscription)
    }

    /// The names of the subscriptions held, in the order they were made.
    pub fn names(&self) -> Vec<Arc<str>> {
        let held = self.held.lock();
        held.iter().flatten().map(|s| Arc::clone(&s.name)).collect()
    }

    /// Ends every subscription and refuses new ones (the connection ended).
    pub(crate) fn close(&self) {
        for subscription in self.held.lock().take().unwrap_or_default() {
            self.hub
                .users()
                .unsubscribe(&subscription.user, self.outbox.id(), &subscription.name);
        }
    }
}
