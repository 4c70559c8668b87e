//! Which region consumes a datasource now, as this node sees it, and the gate a source passes
//! before it consumes.
//!
//! Every node publishes a beat on [`SUBJECT`] every heartbeat and whenever what it consumes
//! changes: its region, its id, and the datasources it consumes (or is about to). A region is
//! live while a beat of one of its nodes is younger than the TTL; this node's own region always
//! is. A datasource belongs to the first live region of its `regions` list (every region, in
//! name order, when the list is empty).
//!
//! A source starts only in the region it belongs to, once no other live region says it
//! consumes it: so a region taking a datasource back waits for the one that held it to stop
//! and commit, and two regions never consume it at once while their views agree. A node that
//! starts waits one TTL and a heartbeat before starting anything, to hear the others first. A
//! source whose datasource now belongs to another region stops (committing what it handed to
//! the bus) and waits at the gate again.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use prometheus::IntGaugeVec;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::RegionSettings;
use crate::config::{is_region_name, GatewayConfig};

/// The subject of the nodes' beats.
pub const SUBJECT: &str = "_wsgate.regions";

/// How often a waiting source looks at the gate again, and a consuming one checks that its
/// datasource still belongs to this region.
const POLL: Duration = Duration::from_millis(50);

/// What a node says on every beat.
#[derive(Debug, Serialize, Deserialize)]
struct Beat {
    region: String,
    node: String,
    consuming: Vec<String>,
}

/// The last beat heard from one node.
struct Heard {
    region: String,
    at: Instant,
    consuming: BTreeSet<String>,
}

/// What this node knows of the regions.
#[derive(Default)]
struct View {
    /// The other nodes, by region and id (ids need not differ across regions).
    nodes: HashMap<(String, String), Heard>,
    /// Each datasource's `regions` list, from the config.
    preferences: HashMap<String, Vec<String>>,
    /// What this node consumes or is about to.
    consuming: BTreeSet<String>,
}

impl View {
    /// The regions heard within `ttl`, and `me`.
    fn live(&self, me: &str, now: Instant, ttl: Duration) -> BTreeSet<String> {
        let mut live: BTreeSet<String> = self
            .nodes
            .values()
            .filter(|h| now.saturating_duration_since(h.at) < ttl)
            .map(|h| h.region.clone())
            .collect();
        live.insert(me.to_string());
        live
    }

    /// The region `datasource` belongs to now.
    fn owner(&self, datasource: &str, me: &str, now: Instant, ttl: Duration) -> Option<String> {
        let live = self.live(me, now, ttl);
        match self.preferences.get(datasource) {
            Some(list) if !list.is_empty() => list.iter().find(|r| live.contains(*r)).cloned(),
            _ => live.into_iter().next(),
        }
    }

    /// The live region other than `me` that says it consumes `datasource`, if any.
    fn consumed_elsewhere(
        &self,
        datasource: &str,
        me: &str,
        now: Instant,
        ttl: Duration,
    ) -> Option<&str> {
        self.nodes
            .values()
            .find(|h| {
                h.region != me
                    && now.saturating_duration_since(h.at) < ttl
                    && h.consuming.contains(datasource)
            })
            .map(|h| h.region.as_str())
    }
}

/// This node's consumption of a datasource, from [`Regions::take_turn`] until [`Turn::end`].
pub struct Turn {
    regions: Arc<Regions>,
    datasource: String,
    /// Ends the watch once the source has stopped.
    over: CancellationToken,
    yielded: Arc<AtomicBool>,
}

impl Turn {
    /// The source has stopped (and committed): this node no longer consumes the datasource,
    /// and says so at once (on drop). True when it stopped because the datasource moved to
    /// another region.
    pub fn end(self) -> bool {
        self.yielded.load(Ordering::SeqCst)
    }

    /// Cancels `stop` once the datasource belongs to another region.
    fn stop_when_moved(&self, stop: CancellationToken) -> impl std::future::Future<Output = ()> {
        let (regions, datasource) = (Arc::clone(&self.regions), self.datasource.clone());
        let (over, yielded) = (self.over.clone(), Arc::clone(&self.yielded));
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = over.cancelled() => return,
                }
                if regions.must_yield(&datasource) {
                    let owner = regions.owner(&datasource);
                    tracing::info!(%datasource, to = owner.as_deref().unwrap_or("no live region"),
                        "the datasource belongs to another region now; stopping its source");
                    yielded.store(true, Ordering::SeqCst);
                    stop.cancel();
                    return;
                }
            }
        }
    }
}

impl Drop for Turn {
    /// Also when the source's thread unwinds: a claim left behind would keep every other
    /// region waiting.
    fn drop(&mut self) {
        self.over.cancel();
        self.regions.release(&self.datasource);
    }
}

/// This node's view of the regions, kept current from the bus.
pub struct Regions {
    settings: RegionSettings,
    node: String,
    started: Instant,
    view: Mutex<View>,
    consuming_changed: Notify,
    up: IntGaugeVec,
}

impl Regions {
    /// Starts beating and listening on `client` as node `node` of `settings.name`, reporting
    /// each region's liveness on `up`, until `stop`.
    pub async fn start(
        settings: RegionSettings,
        node: &str,
        client: async_nats::Client,
        up: IntGaugeVec,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Regions>> {
        let beats = client.subscribe(SUBJECT).await?;
        let regions = Arc::new(Regions {
            settings,
            node: node.to_string(),
            started: Instant::now(),
            view: Mutex::new(View::default()),
            consuming_changed: Notify::new(),
            up,
        });
        tokio::spawn(Arc::clone(&regions).listen(beats, stop.clone()));
        tokio::spawn(Arc::clone(&regions).beat(client, stop));
        Ok(regions)
    }

    /// This node's region.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Takes each datasource's `regions` list from `config`.
    pub fn set_preferences(&self, config: &GatewayConfig) {
        let preferences = config
            .datasource
            .iter()
            .map(|d| (d.name.clone(), d.regions.clone()))
            .collect();
        self.view.lock().preferences = preferences;
    }

    /// The region `datasource` belongs to now, as this node sees it (`None`: none of its
    /// regions is live).
    pub fn owner(&self, datasource: &str) -> Option<String> {
        let (me, ttl) = (&self.settings.name, self.settings.ttl);
        self.view.lock().owner(datasource, me, Instant::now(), ttl)
    }

    /// Whether `datasource` belongs to another region now, so its source here must stop.
    pub fn must_yield(&self, datasource: &str) -> bool {
        self.owner(datasource).as_deref() != Some(self.name())
    }

    /// Why this region does not consume `datasource` now; `None` when it may start.
    fn gate(&self, datasource: &str) -> Option<String> {
        let (me, ttl) = (self.name(), self.settings.ttl);
        if self.started.elapsed() < ttl + self.settings.heartbeat {
            return Some("standby: listening to the other regions first".to_string());
        }
        let now = Instant::now();
        let view = self.view.lock();
        match view.owner(datasource, me, now, ttl) {
            None => Some("standby: no region of the datasource is live".to_string()),
            Some(owner) if owner != me => Some(format!("standby: region {owner} consumes it")),
            Some(_) => view
                .consumed_elsewhere(datasource, me, now, ttl)
                .map(|other| format!("standby: waiting for region {other} to hand it over")),
        }
    }

    /// Waits until this region may consume `datasource`, reporting why not through `waiting`,
    /// then says this node consumes it and watches, for the [`Turn`] it returns, whether the
    /// datasource moves to another region: then `stop` is cancelled, so the source stops.
    /// `None`, saying nothing, if `stop` comes first.
    pub async fn take_turn(
        self: &Arc<Self>,
        datasource: &str,
        stop: &CancellationToken,
        mut waiting: impl FnMut(&str),
    ) -> Option<Turn> {
        let mut said = String::new();
        loop {
            match self.gate(datasource) {
                None => break,
                Some(why) if why != said => {
                    waiting(&why);
                    said = why;
                }
                Some(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.cancelled() => return None,
            }
        }
        self.view.lock().consuming.insert(datasource.to_string());
        self.consuming_changed.notify_one();
        let turn = Turn {
            regions: Arc::clone(self),
            datasource: datasource.to_string(),
            over: CancellationToken::new(),
            yielded: Arc::new(AtomicBool::new(false)),
        };
        tokio::spawn(turn.stop_when_moved(stop.clone()));
        Some(turn)
    }

    /// This node no longer consumes `datasource` (its source stopped and committed).
    fn release(&self, datasource: &str) {
        if self.view.lock().consuming.remove(datasource) {
            self.consuming_changed.notify_one();
        }
    }

    async fn beat(self: Arc<Self>, client: async_nats::Client, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.settings.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.consuming_changed.notified() => {}
                _ = stop.cancelled() => return,
            }
            let beat = Beat {
                region: self.settings.name.clone(),
                node: self.node.clone(),
                consuming: self.view.lock().consuming.iter().cloned().collect(),
            };
            let body = serde_json::to_vec(&beat).expect("a beat serializes");
            if let Err(e) = client.publish(SUBJECT, body.into()).await {
                tracing::debug!(error = %e, "cannot publish the region beat");
            }
            self.report();
        }
    }

    async fn listen(self: Arc<Self>, mut beats: async_nats::Subscriber, stop: CancellationToken) {
        loop {
            let message = tokio::select! {
                message = beats.next() => message,
                _ = stop.cancelled() => return,
            };
            let Some(message) = message else { return };
            let beat = serde_json::from_slice::<Beat>(&message.payload);
            let Some(beat) = beat.ok().filter(|b| is_region_name(&b.region)) else {
                tracing::debug!("ignoring a malformed region beat");
                continue;
            };
            if beat.region == self.settings.name && beat.node == self.node {
                continue;
            }
            let now = Instant::now();
            let mut view = self.view.lock();
            let forget = self.settings.ttl * 10;
            view.nodes
                .retain(|_, h| now.saturating_duration_since(h.at) < forget);
            view.nodes.insert(
                (beat.region.clone(), beat.node),
                Heard {
                    region: beat.region,
                    at: now,
                    consuming: beat.consuming.into_iter().collect(),
                },
            );
        }
    }

    /// Sets `wsgate_region_up` for every region heard of.
    fn report(&self) {
        let now = Instant::now();
        let view = self.view.lock();
        let live = view.live(self.name(), now, self.settings.ttl);
        let known: BTreeSet<&str> = view.nodes.values().map(|h| h.region.as_str()).collect();
        for region in known.into_iter().chain([self.name()]) {
            self.up
                .with_label_values(&[region])
                .set(i64::from(live.contains(region)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(region: &str, ago: Duration, consuming: &[&str]) -> Heard {
        Heard {
            region: region.to_string(),
            at: Instant::now() - ago,
            consuming: consuming.iter().map(|s| s.to_string()).collect(),
        }
    }

    const TTL: Duration = Duration::from_secs(3);

    #[test]
    fn a_datasource_belongs_to_its_first_live_region() {
        let mut view = View::default();
        view.preferences
            .insert("trades".into(), vec!["a".into(), "b".into()]);
        let now = Instant::now();
        // Region a is not heard: b (this node) owns it.
        assert_eq!(view.owner("trades", "b", now, TTL).as_deref(), Some("b"));
        view.nodes.insert(
            ("a".into(), "a1".into()),
            heard("a", Duration::from_secs(1), &[]),
        );
        assert_eq!(view.owner("trades", "b", now, TTL).as_deref(), Some("a"));
        // Heard too long ago: lost.
        view.nodes.insert(
            ("a".into(), "a1".into()),
            heard("a", Duration::from_secs(4), &[]),
        );
        assert_eq!(view.owner("trades", "b", now, TTL).as_deref(), Some("b"));
        // Not allowed here, nor anywhere live.
        view.preferences.insert("only-c".into(), vec!["c".into()]);
        assert_eq!(view.owner("only-c", "b", now, TTL), None);
        // No list: the live regions in name order.
        view.nodes.insert(
            ("a".into(), "a1".into()),
            heard("a", Duration::from_secs(1), &[]),
        );
        assert_eq!(view.owner("other", "b", now, TTL).as_deref(), Some("a"));
    }

    #[test]
    fn nodes_of_different_regions_may_share_an_id() {
        let mut view = View::default();
        let second = Duration::from_secs(1);
        view.nodes
            .insert(("a".into(), "node-1".into()), heard("a", second, &[]));
        view.nodes
            .insert(("b".into(), "node-1".into()), heard("b", second, &[]));
        let live = view.live("c", Instant::now(), TTL);
        assert_eq!(live.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn a_region_waits_while_a_live_other_one_consumes() {
        let mut view = View::default();
        let now = Instant::now();
        view.nodes.insert(
            ("b".into(), "b1".into()),
            heard("b", Duration::from_secs(1), &["trades"]),
        );
        assert_eq!(view.consumed_elsewhere("trades", "a", now, TTL), Some("b"));
        assert_eq!(view.consumed_elsewhere("trades", "b", now, TTL), None);
        assert_eq!(view.consumed_elsewhere("other", "a", now, TTL), None);
        view.nodes.insert(
            ("b".into(), "b1".into()),
            heard("b", Duration::from_secs(5), &["trades"]),
        );
        assert_eq!(view.consumed_elsewhere("trades", "a", now, TTL), None);
    }
}
