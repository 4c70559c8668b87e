//! The one place that tells an embedded node from a cluster member.
//!
//! Without `--redis` the config store is in memory; with it, in Redis (shared by every node
//! started with the same URL and prefix). Without `--nats` the bus is in the process and the
//! node runs every route; with it the node is a cluster member: its bus is NATS, subscribed as
//! its clients' interest follows, the cluster assigns it routes, its sources consume only while
//! holding their datasource's lease, and the bus is probed end to end. [`open`] decides once;
//! the rest of the node talks to the [`Backends`] it returns and to its [`Membership`], never to
//! the settings that chose them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::archive::CaptureArchive;
use super::cards::RedisDirectory;
use super::interest::{FanoutRule, Interest};
use super::NodeSettings;
use crate::admin::cluster::{LocalDirectory, NodeDirectory};
use crate::admin::{AdminState, Readiness};
use crate::auth::listen_keys::{ListenKeyStore, MemoryListenKeys, RedisListenKeys};
use crate::auth::{Accounts, DelegatedKeys, KeyLookup, StoreKeys};
use crate::book::{self, Books};
use crate::bus::{Bus, BusMessage, BusSink, LastDelivered, MemoryBus, NatsBus};
use crate::cluster::directory::Directory;
use crate::cluster::{Cluster, ClusterSettings, Leases, Tenure};
use crate::config::secrets::redact_text;
use crate::config::store::{
    ApiKeyRecord, ConfigStore, KeyKind, MemoryStore, Permission, RedisStore, StoreError,
};
use crate::config::DatasourceKind;
use crate::config::GatewayConfig;
use crate::control::mapper_ops;
use crate::hub::{Archive, Hub};
use crate::metrics::Metrics;
use crate::region::{ConfigFollower, Regions};
use crate::source::demo::exchange;
use crate::source::{Consumers, SourceHealth};
use crate::trade::demo::{self, DemoBackend};
use crate::trade::{Backend, NatsBackend, Trading};

/// The store and bus a node runs on, and how it takes part in a cluster.
pub struct Backends {
    /// The config store: in memory, or Redis.
    pub store: Arc<dyn ConfigStore>,
    /// Where routes publish: in process (straight to the hub), or NATS.
    pub bus: Arc<dyn Bus>,
    /// Alone, or a cluster member.
    pub membership: Arc<dyn Membership>,
    /// Where the nodes' cards are: this node's only, or every member's in Redis.
    pub directory: Arc<dyn NodeDirectory>,
}

/// How a node takes part in a cluster: not at all ([`Alone`]), or as a member ([`Member`]).
pub trait Membership: Send + Sync + 'static {
    /// Keeps in `config` the routes this node runs, and the datasources they read.
    fn keep_own(&self, config: &mut GatewayConfig);

    /// What a source that is down means for `/readyz`.
    fn readiness(&self) -> Readiness;

    /// How many consumers of one datasource run at once.
    fn consumers(&self) -> Consumers;

    /// Runs `consume` (a source, on its own thread) as `datasource`'s consumer: at once, or
    /// once this node holds the datasource's lease, reporting the wait through `health`.
    fn consume(
        &self,
        datasource: &str,
        stop: &CancellationToken,
        health: &SourceHealth,
        consume: Box<dyn FnOnce() + '_>,
    ) -> Tenure;

    /// Every mapping's fanout rule is now `rules` (bus subscriptions and replay follow them).
    fn fanout_rules_changed(&self, rules: &[FanoutRule]);

    /// Reports the bus's health to `admin` (and `wsgate_bus_up`) until [`stop`](Self::stop).
    fn watch_bus(&self, admin: &Arc<AdminState>, metrics: &Metrics);

    /// Leaves the cluster, so the others take this node's datasources at once.
    fn leave(&self) -> BoxFuture<'_, ()>;

    /// Stops what [`watch_bus`](Self::watch_bus) started.
    fn stop(&self);
}

/// Opens the node's bus over `store` and, with a bus URL, joins the cluster. `hub` receives
/// what the bus delivers.
pub async fn open(
    settings: &NodeSettings,
    store: Arc<dyn ConfigStore>,
    hub: &Arc<Hub>,
    metrics: &Metrics,
) -> anyhow::Result<Backends> {
    let Some(nats_url) = &settings.nats else {
        let bus: Arc<dyn Bus> = MemoryBus::new();
        bus.subscribe(">", Arc::clone(hub) as Arc<dyn BusSink>)
            .await?;
        return Ok(Backends {
            store,
            bus,
            membership: Arc::new(Alone),
            directory: Arc::new(LocalDirectory::default()),
        });
    };
    let redis = settings
        .redis
        .clone()
        .context("a cluster member (--nats) needs the cluster's Redis (--redis)")?;
    let cluster_settings = ClusterSettings {
        peer_id: settings.node_id.clone(),
        redis,
        prefix: settings.redis_prefix.clone(),
        heartbeat: settings.heartbeat,
        ttl: settings.peer_ttl,
    };
    let cluster = Cluster::join(&cluster_settings, Arc::clone(&store)).await?;
    let directory = Directory::connect(&cluster_settings.redis, &cluster_settings.prefix).await?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("wsgate {}", settings.node_id))
        .retry_on_initial_connect()
        .connect(nats_url.as_str())
        .await
        .with_context(|| format!("connecting to the bus at {}", redact_text(nats_url)))?;
    let nats = NatsBus::new(client.clone());
    let bus: Arc<dyn Bus> = Arc::clone(&nats) as Arc<dyn Bus>;
    let background = CancellationToken::new();
    tokio::spawn({
        let nats = Arc::clone(&nats);
        let lookup = last_delivered(hub);
        let stop = background.clone();
        async move { nats.answer_last_seen(lookup, stop).await }
    });
    let regions = match &settings.region {
        None => None,
        Some(region) => {
            if !settings.replay_retention.is_zero() {
                tracing::warn!(
                    "a JetStream capture does not span regions (docs/multi-region.md): \
                    with --region, run --replay-retention 0s so that a region taking a stream over \
                    continues its numbering from the hubs"
                );
            }
            let up = metrics.region_up.clone();
            let started = Regions::start(
                region.clone(),
                &settings.node_id,
                client,
                up,
                background.clone(),
            );
            let regions = started.await.context("joining the regions on the bus")?;
            tracing::info!(region = %region.name, "taking part as a region");
            Some(regions)
        }
    };
    if let Some(leader) = &settings.config_leader {
        let follower = ConfigFollower::new(
            leader,
            &settings.redis_prefix,
            Arc::clone(&store),
            &settings.node_id,
            metrics.region_follows.clone(),
            metrics.config_leader_up.clone(),
        );
        tokio::spawn(follower.run(background.clone()));
    }
    // With a capture, streams taken over continue their numbering from it, and resuming
    // clients are replayed from it on any node.
    let archive = (!settings.replay_retention.is_zero()).then(|| {
        nats.use_capture(REPLAY_STREAM);
        let archive = Arc::new(CaptureArchive::new(Arc::clone(&nats)));
        hub.set_archive(Arc::clone(&archive) as Arc<dyn Archive>);
        archive
    });
    let interest = Interest::start(
        Arc::clone(hub),
        Arc::clone(&bus),
        Vec::new(),
        metrics.bus_subscriptions.clone(),
    );
    let member = Member {
        node_id: settings.node_id.clone(),
        leases: cluster.leases(),
        regions,
        cluster: Mutex::new(Some(cluster)),
        interest,
        nats,
        archive,
        retention: settings.replay_retention,
        probe_every: settings.bus_probe_every,
        background,
        runtime: tokio::runtime::Handle::current(),
    };
    Ok(Backends {
        store,
        bus,
        membership: Arc::new(member),
        directory: Arc::new(RedisDirectory(directory)),
    })
}

/// Opens the store: Redis when configured, else memory. An empty store is seeded with the
/// config file and the modules of the mappers directory.
/// Opens the config store (memory, or Redis seeded from the config file when empty) and seeds
/// the mappers found in the mappers directory.
pub async fn open_store(settings: &NodeSettings) -> anyhow::Result<Arc<dyn ConfigStore>> {
    let read_config = || -> anyhow::Result<GatewayConfig> {
        let path = &settings.config_path;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        GatewayConfig::from_json(&text).with_context(|| format!("parsing {}", path.display()))
    };
    let seeder = format!("seed:{}", settings.node_id);
    let store: Arc<dyn ConfigStore> = match &settings.redis {
        None => Arc::new(MemoryStore::new(read_config()?)),
        Some(url) => {
            let store = RedisStore::connect(url, &settings.redis_prefix)
                .await
                .with_context(|| {
                    format!("connecting to the config store at {}", redact_text(url))
                })?;
            // Seeds only an empty store, atomically: of several nodes starting at once, one does.
            if store.seed_if_empty(read_config()?, &seeder).await? {
                tracing::info!(config = %settings.config_path.display(), "seeded the empty config store");
            }
            store
        }
    };
    if settings.mappers_dir.is_dir() {
        for (name, bytes) in crate::mapper::modules_in_dir(&settings.mappers_dir)? {
            if mapper_ops::seed(&*store, &name, bytes.into(), &seeder).await? {
                tracing::info!(mapper = %name, "seeded mapper version 1");
            }
        }
    }
    seed_demo_keys(&*store, &seeder).await?;
    Ok(store)
}

/// What seeds the demo accounts' API keys again after the store was restored (audited as
/// `seed:<node id>`).
pub fn reseed_keys(
    store: &Arc<dyn ConfigStore>,
    node_id: &str,
) -> Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync> {
    let (store, seeder) = (Arc::clone(store), format!("seed:{node_id}"));
    Box::new(move || {
        let (store, seeder) = (Arc::clone(&store), seeder.clone());
        async move {
            if let Err(e) = seed_demo_keys(&*store, &seeder).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot seed the demo accounts' API keys again");
            }
        }
        .boxed()
    })
}

/// Creates the API keys of the demo accounts the stored config declares (demo datasources'
/// `accounts`), unless they exist: fixed, documented credentials for the demo only.
async fn seed_demo_keys(store: &dyn ConfigStore, seeder: &str) -> anyhow::Result<()> {
    let config = store.current().await?.config;
    let demos = config
        .datasource
        .iter()
        .filter(|d| d.kind == DatasourceKind::Demo);
    for datasource in demos {
        let accounts = exchange::accounts_of(&datasource.properties)
            .map_err(|e| anyhow::anyhow!("datasource `{}`: {e}", datasource.name))?;
        for account in accounts {
            if store.api_key(&account.api_key).await?.is_some() {
                continue;
            }
            let record = ApiKeyRecord {
                key: account.api_key.clone(),
                user_id: account.user_id.clone(),
                permissions: vec![Permission::UserStream, Permission::Trade],
                kind: KeyKind::Hmac,
                ip_allow: Vec::new(),
                disabled: false,
                created_at_ms: crate::util::now_ms(),
                created_by: seeder.to_string(),
                revision: 0,
            };
            match store
                .put_api_key(0, record, Some(&account.secret), seeder, "key.create")
                .await
            {
                Ok(_) => {
                    tracing::info!(user = %account.user_id, key = %account.api_key, "seeded a demo account's API key")
                }
                // Another node seeded it first.
                Err(StoreError::Stale { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Where trade actions go: NATS request/reply on the trade bus (`--trade-nats`, else the
/// cluster's bus), or the demo exchange in process. On a NATS trade bus the node also answers
/// for its demo exchange while its demo market runs here (`trade::demo::respond`), until
/// `stop`.
pub async fn open_trading(
    settings: &NodeSettings,
    stop: &CancellationToken,
) -> anyhow::Result<Trading> {
    let backend: Arc<dyn Backend> = match settings.trade_nats.as_ref().or(settings.nats.as_ref()) {
        None => Arc::new(DemoBackend),
        Some(url) => {
            let client = async_nats::ConnectOptions::new()
                .name(format!("wsgate {} trade", settings.node_id))
                .retry_on_initial_connect()
                .connect(url.as_str())
                .await
                .with_context(|| {
                    format!(
                        "connecting to the trade backend's bus at {}",
                        redact_text(url)
                    )
                })?;
            let prefix = settings.trade.subject_prefix.clone();
            tokio::spawn(demo::respond(client.clone(), prefix.clone(), stop.clone()));
            Arc::new(NatsBackend::new(client, prefix))
        }
    };
    Ok(Trading {
        backend,
        settings: settings.trade.clone(),
    })
}

/// The node's order books ([`crate::book`]). A cluster member (`--nats`) answers other nodes'
/// snapshot requests for the books it keeps and asks them for the others, over a connection of
/// its own to the cluster's NATS.
pub async fn open_books(settings: &NodeSettings, metrics: &Metrics) -> anyhow::Result<Books> {
    let served = metrics.depth_snapshots.clone();
    let Some(url) = &settings.nats else {
        return Ok(Books::new(served, None));
    };
    let client = async_nats::ConnectOptions::new()
        .name(format!("wsgate {} books", settings.node_id))
        .retry_on_initial_connect()
        .connect(url.as_str())
        .await
        .with_context(|| format!("connecting to the bus at {} for books", redact_text(url)))?;
    Ok(Books::new(served, Some(book::cluster::Link::new(client))))
}

/// The account services over `store`: API keys from it, listen keys in memory alone or in the
/// cluster's Redis.
pub async fn open_accounts(
    settings: &NodeSettings,
    store: &Arc<dyn ConfigStore>,
) -> anyhow::Result<Accounts> {
    let listen_keys: Arc<dyn ListenKeyStore> = match &settings.redis {
        None => Arc::new(MemoryListenKeys::new()),
        Some(url) => RedisListenKeys::connect(url, &settings.redis_prefix)
            .await
            .with_context(|| {
                format!("connecting to the listen key store at {}", redact_text(url))
            })?,
    };
    let keys: Arc<dyn KeyLookup> = match &settings.delegated_keys {
        None => Arc::new(StoreKeys(Arc::clone(store))),
        Some(delegated) => {
            let url = settings
                .trade_nats
                .as_ref()
                .or(settings.nats.as_ref())
                .context("delegated key lookups (--auth-subject) need a NATS server (--trade-nats or --nats)")?;
            let client = async_nats::ConnectOptions::new()
                .name(format!("wsgate {} auth", settings.node_id))
                .retry_on_initial_connect()
                .connect(url.as_str())
                .await
                .with_context(|| {
                    format!(
                        "connecting to the auth service's bus at {}",
                        redact_text(url)
                    )
                })?;
            Arc::new(DelegatedKeys::new(client, delegated.clone()))
        }
    };
    Ok(Accounts {
        keys,
        listen_keys,
        listen_key_settings: settings.listen_keys.clone(),
    })
}

/// A node on its own: it runs every route, its sources consume at once, and everything it
/// maps goes straight to its own hub.
struct Alone;

impl Membership for Alone {
    fn keep_own(&self, _config: &mut GatewayConfig) {}

    /// An embedded node delivers only what its own sources read.
    fn readiness(&self) -> Readiness {
        Readiness::SourcesRequired
    }

    fn consumers(&self) -> Consumers {
        Consumers::Many
    }

    fn consume(
        &self,
        _datasource: &str,
        _stop: &CancellationToken,
        _health: &SourceHealth,
        consume: Box<dyn FnOnce() + '_>,
    ) -> Tenure {
        consume();
        Tenure::Released
    }

    fn fanout_rules_changed(&self, _rules: &[FanoutRule]) {}

    fn watch_bus(&self, _admin: &Arc<AdminState>, metrics: &Metrics) {
        // The bus in the process is up as long as the node is.
        metrics.bus_up.set(1);
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }

    fn stop(&self) {}
}

/// A cluster member.
struct Member {
    node_id: String,
    cluster: Mutex<Option<Cluster>>,
    leases: Leases,
    /// Which region consumes each datasource, in a multi-region deployment.
    regions: Option<Arc<Regions>>,
    interest: Interest,
    nats: Arc<NatsBus>,
    /// Where resuming clients are replayed from, with a capture.
    archive: Option<Arc<CaptureArchive>>,
    /// How long JetStream keeps the fanout subjects for replay (zero: not captured).
    retention: Duration,
    probe_every: Duration,
    /// Stops the bus probe, the answers on where streams stopped, the region beats and the
    /// config follower.
    background: CancellationToken,
    /// The node's runtime, for the lease's Redis calls from a source's thread.
    runtime: tokio::runtime::Handle,
}

impl Member {
    /// Runs `consume` once this node holds `datasource`'s lease.
    fn consume_leased(
        &self,
        datasource: &str,
        stop: &CancellationToken,
        health: &SourceHealth,
        consume: Box<dyn FnOnce() + '_>,
    ) -> Tenure {
        health.set_down("waiting for the datasource's lease");
        let tenure = self.leases.hold_while(datasource, stop, &self.runtime, || {
            health.set_down("connecting");
            // Without a capture the numbering continues from the hubs: asked before anything
            // is read, now that the previous owner has stopped.
            self.runtime.block_on(self.nats.ask_hubs_ahead());
            consume()
        });
        if tenure == Tenure::Lost {
            health.set_down("lease lost to another node");
        }
        tenure
    }
}

/// What the hub last delivered of each stream: the answer this node gives a new publisher
/// (see [`NatsBus::answer_last_seen`]).
fn last_delivered(hub: &Arc<Hub>) -> LastDelivered {
    let hub = Arc::clone(hub);
    Arc::new(move || {
        let delivered = hub.topics().into_iter().filter_map(|topic| {
            let seq = topic.last_seq();
            (seq > 0).then(|| BusMessage {
                stream: Arc::clone(topic.name()),
                seq,
                event_time_us: 0,
                published_us: 0,
                payload: bytes::Bytes::new(),
                user_id: None,
                origin: topic.last_origin(),
            })
        });
        delivered.collect()
    })
}

/// The JetStream stream capturing every fanout subject.
const REPLAY_STREAM: &str = "wsgate_fanout";

impl Membership for Member {
    /// The routes the cluster assigned to this node.
    fn keep_own(&self, config: &mut GatewayConfig) {
        // Every config the node loads passes here whole: the regions' gate learns each
        // datasource's `regions` list from it.
        if let Some(regions) = &self.regions {
            regions.set_preferences(config);
        }
        config
            .routes
            .retain(|route| route.peer_id.as_deref() == Some(self.node_id.as_str()));
        let read: std::collections::BTreeSet<&str> = config
            .routes
            .iter()
            .map(|route| route.data_source.as_str())
            .collect();
        config
            .datasource
            .retain(|datasource| read.contains(datasource.name.as_str()));
    }

    /// Every node delivers every stream over the bus: an upstream outage is the same on all
    /// of them, so it leaves the node ready (listed as degraded).
    fn readiness(&self) -> Readiness {
        Readiness::BusRequired
    }

    /// The lease lets one node at a time consume a datasource.
    fn consumers(&self) -> Consumers {
        Consumers::OneAtATime
    }

    fn consume(
        &self,
        datasource: &str,
        stop: &CancellationToken,
        health: &SourceHealth,
        consume: Box<dyn FnOnce() + '_>,
    ) -> Tenure {
        let Some(regions) = &self.regions else {
            return self.consume_leased(datasource, stop, health, consume);
        };
        let turn = regions.take_turn(datasource, stop, |why| health.set_standby(why));
        let Some(turn) = self.runtime.block_on(turn) else {
            return Tenure::NeverTaken;
        };
        let tenure = self.consume_leased(datasource, stop, health, consume);
        if turn.end() && tenure != Tenure::Lost {
            health.set_standby("standby: handed over to another region");
            return Tenure::Yielded;
        }
        tenure
    }

    fn fanout_rules_changed(&self, rules: &[FanoutRule]) {
        self.interest.set_rules(rules.to_vec());
        if let Some(archive) = &self.archive {
            archive.set_rules(rules.to_vec());
        }
        if self.retention.is_zero() {
            return;
        }
        let subjects: Vec<String> = rules.iter().map(FanoutRule::all_subjects).collect();
        let (nats, retention) = (Arc::clone(&self.nats), self.retention);
        tokio::spawn(async move {
            if let Err(e) = nats.capture(REPLAY_STREAM, &subjects, retention).await {
                tracing::warn!(error = %format!("{e:#}"), ?subjects, "cannot capture the fanout subjects in JetStream");
            }
        });
    }

    fn watch_bus(&self, admin: &Arc<AdminState>, metrics: &Metrics) {
        let subject = format!(
            "_wsgate.probe.{}",
            self.node_id.replace(['.', ' ', '*', '>'], "_")
        );
        let (admin, gauge) = (Arc::clone(admin), metrics.bus_up.clone());
        let report = move |problem: Option<String>| {
            gauge.set(i64::from(problem.is_none()));
            *admin.bus_problem.lock() = problem;
        };
        let (nats, every, stop) = (
            Arc::clone(&self.nats),
            self.probe_every,
            self.background.clone(),
        );
        tokio::spawn(async move { nats.probe(subject, every, report, stop).await });
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        let cluster = self.cluster.lock().take();
        async move {
            if let Some(cluster) = cluster {
                cluster.leave().await;
            }
        }
        .boxed()
    }

    fn stop(&self) {
        self.background.cancel();
    }
}
