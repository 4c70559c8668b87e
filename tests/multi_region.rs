//! Two regions on one machine: each its own NATS cluster (one server; the two joined by a
//! gateway into a supercluster), its own Redis, and two wsgate nodes (`--region`), with region
//! `b`'s config store following region `a`'s (`--config-leader`). The upstream, a Redis stream,
//! is reachable from both, as an exchange's feed would be. `docs/multi-region.md` describes the
//! deployment; the bounds checked here are the ones it states.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::haproxy::HaProxy;
use common::nats::{free_port, NatsServer};
use common::redis::RedisServer;
use common::trades::{expect_trades, match_event, next_got, redis_stream_config, Got};
use common::{collect_stream, wait_for, Client, Gateway, TEST_TOKEN};

const STREAM: &str = "btcusdt@trade";
const WAIT: Duration = Duration::from_secs(30);
/// A region is lost after this long without a word from its nodes (`--region-ttl`).
const REGION_TTL: Duration = Duration::from_secs(2);
/// How long after a region is lost the other consumes its datasource at most: the TTL, one
/// look at the gate and the source's start (`docs/multi-region.md`).
const FAILOVER_BOUND: Duration = Duration::from_secs(4);
/// How long a promote in the leader region takes to run in the follower at most.
const PROPAGATION_BOUND: Duration = Duration::from_secs(3);

/// One region: its bus, its config store and its nodes.
struct Region {
    name: &'static str,
    nats: NatsServer,
    redis: RedisServer,
    nodes: Vec<Gateway>,
}

/// The two regions and the upstream both read.
struct World {
    upstream: RedisServer,
    config: Value,
    a: Region,
    b: Region,
}

impl World {
    /// Regions `a` (the config leader) and `b`, the trades datasource preferring `regions`.
    fn start(regions: &[&str]) -> World {
        let upstream = RedisServer::new();
        let mut config = redis_stream_config(&upstream.url());
        config["datasource"][0]["regions"] = json!(regions);
        config["topics"][0]["vars"]["symbol"] = json!(["btcusdt", "ethusdt"]);
        let (gateway_a, gateway_b) = (free_port(), free_port());
        let nats_a = NatsServer::in_supercluster("a", gateway_a, &[("b", gateway_b)]);
        let nats_b = NatsServer::in_supercluster("b", gateway_b, &[("a", gateway_a)]);
        wait_for("the gateways connected both ways", || {
            linked(&nats_a, "b") && linked(&nats_b, "a")
        });
        let mut a = Region {
            name: "a",
            nats: nats_a,
            redis: RedisServer::persistent(),
            nodes: Vec::new(),
        };
        let mut b = Region {
            name: "b",
            nats: nats_b,
            redis: RedisServer::new(),
            nodes: Vec::new(),
        };
        a.nodes = (1..=2).map(|i| a.node(&config, i, None)).collect();
        let leader = a.redis.url();
        b.nodes = (1..=2).map(|i| b.node(&config, i, Some(&leader))).collect();
        World {
            upstream,
            config,
            a,
            b,
        }
    }
}

impl Region {
    /// Starts node `<region><i>` of this region, following `leader`'s config store if given.
    fn node(&self, config: &Value, i: usize, leader: Option<&str>) -> Gateway {
        let id = format!("{}{i}", self.name);
        let ttl = format!("{}ms", REGION_TTL.as_millis());
        let mut args = vec![
            "--region",
            self.name,
            "--region-ttl",
            &ttl,
            "--replay-retention",
            "0s",
            "--admin-token",
            TEST_TOKEN,
        ];
        if let Some(leader) = leader {
            args.extend(["--config-leader", leader]);
        }
        Gateway::cluster_node_with(config, &self.redis.url(), &self.nats.url(), &id, &args)
    }

    /// The node consuming the trades datasource, if one does.
    fn owner(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.metric("wsgate_source_up{datasource=\"trades\"}") == 1.0)
    }

    /// Upstream events this region's nodes have read.
    fn events(&self) -> f64 {
        self.nodes
            .iter()
            .map(|n| n.metric("wsgate_source_events_total"))
            .sum()
    }

    /// Subscriptions of the default account the other cluster told this one it has.
    fn remote_interest(&self, other: &str) -> u64 {
        let gatewayz = self.nats.monitor("/gatewayz?accs=1");
        gatewayz["outbound_gateways"][other]["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == "$G")
            .and_then(|a| a["num_subs"].as_u64())
            .unwrap_or(0)
    }

    /// Messages this cluster has sent to `other` through the gateway.
    fn sent_to(&self, other: &str) -> u64 {
        let gatewayz = self.nats.monitor("/gatewayz");
        gatewayz["outbound_gateways"][other]["connection"]["out_msgs"]
            .as_u64()
            .unwrap_or_else(|| panic!("no outbound gateway to {other}: {gatewayz}"))
    }
}

/// Whether `nats` has its outbound gateway to `other` connected.
fn linked(nats: &NatsServer, other: &str) -> bool {
    nats.monitor("/gatewayz")["outbound_gateways"][other]["connection"]["cid"].is_u64()
}

/// Appends `symbol` trades `ids` to the upstream stream.
async fn produce_symbol(url: &str, symbol: &str, ids: std::ops::RangeInclusive<u64>) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut pipe = redis::pipe();
    for id in ids {
        let event = match_event(id).replace("BTCUSDT", symbol);
        pipe.cmd("XADD")
            .arg("trades")
            .arg("*")
            .arg("payload")
            .arg(event)
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();
}

/// Connects `client` to `node` on `STREAM` and waits until region `home`'s cluster has told
/// region `from` about the new interest (so that nothing published from now on is missed).
async fn watch_from(node: &Gateway, path: &str, home: &Region, from: &Region) -> Client {
    let before = from.remote_interest(home.name);
    let client = node.connect(path).await;
    wait_for("the interest crossed the gateway", || {
        from.remote_interest(home.name) > before
    });
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_consumed_in_one_region_reaches_the_other_once_and_unwatched_subjects_stay_home() {
    let world = World::start(&["a", "b"]);
    let (a, b) = (&world.a, &world.b);
    wait_for("region a consuming the trades", || a.owner().is_some());
    assert_eq!(b.owner(), None, "region b must stand by");
    // Standing by is not a fault: the node assigned the datasource in region b stays ready.
    let mut standby = None;
    wait_for("region b's assigned node listing its standby", || {
        standby = b.nodes.iter().find_map(|n| {
            let (status, body) = n.http_get("/readyz").unwrap();
            body.contains("source trades: standby: region a consumes it")
                .then_some((status, body))
        });
        standby.is_some()
    });
    let (status, body) = standby.unwrap();
    let standing_by: f64 = b
        .nodes
        .iter()
        .map(|n| n.metric("wsgate_source_standby{datasource=\"trades\"}"))
        .sum();
    assert_eq!(standing_by, 1.0, "one node of region b stands by");
    assert_eq!(
        (status, body.lines().next()),
        (200, Some("ready")),
        "{body}"
    );

    let path = format!("/stream?streams={STREAM}");
    let mut client = watch_from(&b.nodes[0], &path, b, a).await;
    common::trades::produce(&world.upstream.url(), 1..=200).await;
    expect_trades(&mut client, 1..=200).await;
    assert_eq!(a.events(), 200.0);
    assert_eq!(b.events(), 0.0, "region b read the upstream itself");

    // ethusdt@trade is published in region a, watched by nobody in region b.
    let unwatched_before = a.sent_to("b");
    produce_symbol(&world.upstream.url(), "ETHUSDT", 201..=2200).await;
    let owner = &a.nodes[a.owner().unwrap()];
    wait_for("the ethusdt trades published", || {
        owner.metric("wsgate_source_mapped_total") == 2200.0
    });
    let unwatched = a.sent_to("b") - unwatched_before;

    let watched_before = a.sent_to("b");
    common::trades::produce(&world.upstream.url(), 2201..=4200).await;
    expect_trades(&mut client, 2201..=4200).await;
    let watched = a.sent_to("b") - watched_before;
    println!(
        "through the gateway a→b: {unwatched} messages while 2000 unwatched trades were \
         published, {watched} while 2000 watched ones were"
    );
    // What crosses besides: the nodes' region beats and probes' answers (a few a second).
    assert!(
        unwatched < 50,
        "{unwatched} messages crossed for an unwatched subject"
    );
    assert!(
        watched >= 2000,
        "{watched} messages crossed for 2000 watched trades"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapper_promoted_in_the_leader_region_runs_in_the_follower_within_the_bound() {
    // Region b consumes (it comes first), region a leads the config.
    let world = World::start(&["b", "a"]);
    let (a, b) = (&world.a, &world.b);
    wait_for("region b consuming the trades", || b.owner().is_some());
    let mut client = b.nodes[0]
        .connect(&format!("/stream?streams={STREAM}"))
        .await;
    wait_for("the node's bus subscription", || {
        b.nodes[0].metric("wsgate_bus_subscriptions ") == 1.0
    });
    let url = world.upstream.url();
    let producer = tokio::spawn(async move {
        for first in (1..=u64::MAX).step_by(5) {
            common::trades::produce(&url, first..=first + 4).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let first = collect_stream(&mut client, STREAM, 10, WAIT).await;
    assert!(first.iter().all(|t| t.get("mapper").is_none()), "{first:?}");

    let sample = format!("{}/mappers/samples/trade.json", env!("CARGO_MANIFEST_DIR"));
    let module = common::mappers_dir().join("tagged_trade.wasm");
    let copied = || -> f64 {
        b.nodes
            .iter()
            .map(|n| n.metric("wsgate_region_follows_total{what=\"mapper\"}"))
            .sum()
    };
    let copied_before = copied();
    let asked = Instant::now();
    let push = a.nodes[0].cli(&[
        "mapper",
        "push",
        "binance_trade",
        module.to_str().unwrap(),
        "--sample",
        &sample,
        "--promote",
    ]);
    assert!(push.ok, "{push:?}");
    let promoted = Instant::now();
    let mut last = first.last().unwrap()["t"].as_u64().unwrap();
    loop {
        let trade = collect_stream(&mut client, STREAM, 1, WAIT).await.remove(0);
        let t = trade["t"].as_u64().unwrap();
        assert_eq!(t, last + 1, "trade ids across the swap");
        last = t;
        if trade["mapper"] == "tagged_trade" {
            break;
        }
    }
    let (took, since_asked) = (promoted.elapsed(), asked.elapsed());
    producer.abort();
    println!(
        "a promote in region a ran in region b {took:?} after the push returned \
         ({since_asked:?} after it was sent, with its smoke test)"
    );
    assert!(
        took < PROPAGATION_BOUND,
        "the promote took {took:?} to run in region b"
    );
    assert_eq!(
        copied() - copied_before,
        1.0,
        "one node of region b copied the promote"
    );
    assert_eq!(a.owner(), None, "region a must stand by");
    // The follower's own history names the change.
    let history = b.nodes[0].cli(&["config", "history"]);
    assert!(history.stdout.contains("region.follow"), "{history:?}");
}

/// The next `STREAM` trade a resuming client gets, as (sequence number, trade id); `None` when
/// the connection ends or nothing comes within `limit`. A resync notice fails the test: every
/// resume here must be covered.
async fn next_trade(client: &mut Client, limit: Duration) -> Option<(u64, u64)> {
    match next_got(client, limit).await? {
        Got::Trade { seq, t } => Some((seq, t)),
        resync => panic!("a gap: {resync:?}"),
    }
}

/// Reads `client` until trade `last`, then checks that nothing more comes.
fn read_until(mut client: Client, last: u64) -> tokio::task::JoinHandle<Vec<(u64, u64)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.last().is_none_or(|&(_, t)| t < last) {
            match next_trade(&mut client, WAIT).await {
                Some(trade) => seen.push(trade),
                None => panic!("the stream ended after {:?}", seen.last()),
            }
        }
        if let Some(more) = next_trade(&mut client, Duration::from_millis(500)).await {
            panic!("more after trade {last}: {more:?}");
        }
        seen
    })
}

/// `first..=last` in batches of ten, one every 20 ms.
fn produce_paced(url: String, ids: std::ops::RangeInclusive<u64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let last = *ids.end();
        for first in ids.step_by(10) {
            common::trades::produce(&url, first..=(first + 9).min(last)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Every trade `1..=last` once, in order, numbered 1 on without a gap.
fn assert_every_trade_once(seen: &[(u64, u64)], last: u64, who: &str) {
    let expected: Vec<(u64, u64)> = (1..=last).map(|t| (t, t)).collect();
    if seen != expected {
        let first_wrong = seen.iter().zip(&expected).position(|(s, e)| s != e);
        panic!(
            "{who}: {} trades, first wrong at {first_wrong:?}: {:?}",
            seen.len(),
            first_wrong.map(|i| &seen[i.saturating_sub(2)..(i + 3).min(seen.len())])
        );
    }
}

/// How long after `since` a node at one of `admins` consumes the trades.
fn consumed_after(admins: Vec<std::net::SocketAddr>, since: Instant) -> Duration {
    let deadline = Instant::now() + WAIT;
    loop {
        let up = admins.iter().any(|admin| {
            common::http_get(*admin, "/metrics").is_ok_and(|(_, body)| {
                common::metric_value(&body, "wsgate_source_up{datasource=\"trades\"}") == 1.0
            })
        });
        if up {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "no node took the trades over");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_region_hands_its_datasource_over_and_its_return_repeats_nothing() {
    const LOSS_AT: u64 = 600;
    const BEFORE_RETURN: u64 = 2000;
    const LAST: u64 = 3000;
    let mut world = World::start(&["a", "b"]);
    wait_for("region a consuming the trades", || {
        world.a.owner().is_some()
    });
    let proxy_a = HaProxy::start(&world.a.nodes);
    let proxy_b = HaProxy::start(&world.b.nodes);
    let resume = format!("/stream?streams={STREAM}&resume=true");
    // A client of region b on each of its nodes: their rings hold the stream for clients
    // that move in.
    let before = world.a.remote_interest("b");
    let watchers: Vec<_> =
        futures_util::future::join_all(world.b.nodes.iter().map(|node| node.connect(&resume)))
            .await;
    wait_for("region b's interest known in region a", || {
        world.a.remote_interest("b") > before
    });
    let watchers: Vec<_> = watchers.into_iter().map(|c| read_until(c, LAST)).collect();
    let mut client = proxy_a.connect(&resume).await;
    wait_for("the client's node subscribed", || {
        world
            .a
            .nodes
            .iter()
            .any(|n| n.metric("wsgate_bus_subscriptions ") == 1.0)
    });

    let producer = produce_paced(world.upstream.url(), 1..=BEFORE_RETURN);
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let mut lost_at = None;
    let mut failover = None;
    while seen.last().is_none_or(|&(_, t)| t < BEFORE_RETURN) {
        match next_trade(&mut client, WAIT).await {
            Some(trade) => {
                seen.push(trade);
                if lost_at.is_none() && trade.1 >= LOSS_AT {
                    // Region a is lost: its nodes, its NATS and its Redis.
                    for node in &world.a.nodes {
                        node.signal("KILL");
                    }
                    world.a.nats.stop();
                    world.a.redis.stop();
                    let at = Instant::now();
                    lost_at = Some(at);
                    let admins = world.b.nodes.iter().map(|n| n.admin).collect();
                    failover = Some(tokio::task::spawn_blocking(move || {
                        consumed_after(admins, at)
                    }));
                }
            }
            None => {
                assert!(lost_at.is_some(), "disconnected before the loss: {seen:?}");
                let after = seen.last().map_or(0, |&(seq, _)| seq);
                let path = format!("{resume}&resumeFrom={STREAM}:{after}");
                client = proxy_b.connect(&path).await;
            }
        }
    }
    producer.await.unwrap();
    let failover = failover.expect("region a was lost").await.unwrap();
    assert!(world.b.owner().is_some(), "region b consumes the trades");

    // Region a comes back (its Redis with its data, its NATS, new processes of its nodes)
    // while trades keep coming: it takes the datasource back from region b.
    world.a.redis.start();
    world.a.nats.start();
    wait_for("the gateways connected again", || {
        linked(&world.a.nats, "b") && linked(&world.b.nats, "a")
    });
    let returned = Instant::now();
    let producer = produce_paced(world.upstream.url(), BEFORE_RETURN + 1..=LAST);
    world.a.nodes = (1..=2)
        .map(|i| world.a.node(&world.config, i, None))
        .collect();
    let admins = world.a.nodes.iter().map(|n| n.admin).collect();
    let taken_back = tokio::task::spawn_blocking(move || consumed_after(admins, returned));
    while seen.last().is_none_or(|&(_, t)| t < LAST) {
        let trade = next_trade(&mut client, WAIT).await;
        seen.push(trade.expect("the moved client stays connected in region b"));
    }
    producer.await.unwrap();
    let taken_back = taken_back.await.unwrap();
    wait_for("region b standing by again", || world.b.owner().is_none());

    assert_every_trade_once(&seen, LAST, "the client moved from a to b");
    for (i, watcher) in watchers.into_iter().enumerate() {
        let got = watcher.await.unwrap();
        assert_every_trade_once(&got, LAST, &format!("region b's client {i}"));
    }
    println!(
        "region a lost after trade {LOSS_AT}: region b consumed its datasource {failover:?} \
         later; region a, started again, consumed it {taken_back:?} after its NATS was back"
    );
    assert!(
        failover < FAILOVER_BOUND,
        "region b took {failover:?} to take the datasource over"
    );
}

/// When a client got each trade, until trade `last`.
fn arrivals(mut client: Client, last: u64) -> tokio::task::JoinHandle<Vec<(u64, Instant)>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        while got.last().is_none_or(|&(t, _)| t < last) {
            let trade = collect_stream(&mut client, STREAM, 1, WAIT).await.remove(0);
            got.push((trade["t"].as_u64().unwrap(), Instant::now()));
        }
        got
    })
}

/// p50, p95 and p99 of `samples` in milliseconds.
fn percentiles(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        at(0.5),
        at(0.95),
        at(0.99)
    )
}

/// Cross-region delivery latency against the in-region path, same run (a measurement, not a
/// check; `docs/benchmarks.md` has the command): the datasource consumed in region a, a client
/// on a node of each region that does not consume it, 500 trades a second for ten seconds; from
/// the upstream write to each client, and what the gateway sent per trade.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn cross_region_latency() {
    const TRADES: u64 = 5000;
    let world = World::start(&["a", "b"]);
    let (a, b) = (&world.a, &world.b);
    wait_for("region a consuming the trades", || a.owner().is_some());
    let elsewhere = 1 - a.owner().unwrap();
    let path = format!("/stream?streams={STREAM}");
    let client_a = a.nodes[elsewhere].connect(&path).await;
    let client_b = watch_from(&b.nodes[0], &path, b, a).await;
    wait_for("the region a client's subscription", || {
        a.nodes[elsewhere].metric("wsgate_bus_subscriptions ") == 1.0
    });
    let (in_a, in_b) = (arrivals(client_a, TRADES), arrivals(client_b, TRADES));
    let gateway_before =
        a.nats.monitor("/gatewayz")["outbound_gateways"]["b"]["connection"].clone();
    let url = world.upstream.url();
    let mut written = Vec::new();
    for first in (1..=TRADES).step_by(10) {
        written.push(Instant::now());
        common::trades::produce(&url, first..=first + 9).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (in_a, in_b) = (in_a.await.unwrap(), in_b.await.unwrap());
    let gateway_after = a.nats.monitor("/gatewayz")["outbound_gateways"]["b"]["connection"].clone();
    let latency = |arrivals: &[(u64, Instant)]| -> Vec<f64> {
        arrivals
            .iter()
            .map(|&(t, at)| (at - written[((t - 1) / 10) as usize]).as_secs_f64() * 1e3)
            .collect()
    };
    let added: Vec<f64> = in_a
        .iter()
        .zip(&in_b)
        .map(|(&(ta, at_a), &(tb, at_b))| {
            assert_eq!(ta, tb);
            // Signed: the region b client may get a trade first.
            let (later, earlier) = (at_b.duration_since(at_a), at_a.duration_since(at_b));
            (later.as_secs_f64() - earlier.as_secs_f64()) * 1e3
        })
        .collect();
    let sent = |field: &str| {
        gateway_after[field].as_u64().unwrap() - gateway_before[field].as_u64().unwrap()
    };
    println!(
        "{TRADES} trades at 500/s, upstream write → client: region a (in region) {}; region b \
         (across the gateway) {}; b later than a by {}; the gateway a→b sent {} messages, \
         {} bytes ({} per message)",
        percentiles(latency(&in_a)),
        percentiles(latency(&in_b)),
        percentiles(added),
        sent("out_msgs"),
        sent("out_bytes"),
        sent("out_bytes") / sent("out_msgs").max(1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_moves_a_datasource_to_another_region_without_a_gap_or_a_repeat() {
    const LAST: u64 = 1500;
    let world = World::start(&["a", "b"]);
    let (a, b) = (&world.a, &world.b);
    wait_for("region a consuming the trades", || a.owner().is_some());
    let resume = format!("/stream?streams={STREAM}&resume=true");
    let client = watch_from(&b.nodes[0], &resume, b, a).await;
    let watcher = read_until(client, LAST);
    let producer = produce_paced(world.upstream.url(), 1..=LAST);
    wait_for("trades consumed in region a", || a.events() >= 300.0);

    // The operator prefers region b now, in the leader's config.
    let out = a.nodes[0].cli(&["config", "get"]);
    assert!(out.ok, "{out:?}");
    let mut config: Value = serde_json::from_str(&out.stdout).unwrap();
    config["config"]["datasource"][0]["regions"] = json!(["b", "a"]);
    a.nodes[0].apply_config(&config["config"]);
    let moved = Instant::now();
    wait_for("region b consuming, region a not", || {
        b.owner().is_some() && a.owner().is_none()
    });
    let took = moved.elapsed();
    producer.await.unwrap();
    let seen = watcher.await.unwrap();
    assert_every_trade_once(&seen, LAST, "region b's client");
    assert!(b.events() > 0.0, "region b never read the upstream");
    println!("the datasource moved from region a to region b {took:?} after the config change");
}
