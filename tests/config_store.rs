//! Conformance of the config stores: every behaviour of `ConfigStore` runs against the in-memory
//! store and against `RedisStore` on a private `redis-server` per test; the cluster-only
//! behaviours (several nodes on one Redis, Redis going away and coming back) run on Redis only.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis::RedisServer;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use wsgate::config::store::{
    ApiKeyRecord, ConfigStore, KeyKind, MapperManifest, MapperMeta, MapperVersionMeta, MemoryStore,
    Permission, RedisStore, StoreError, Versioned, MAX_AUDIT_ENTRIES,
};
use wsgate::config::GatewayConfig;
use wsgate::util::now_ms;

/// How long a change may take to reach a watcher.
const WAIT: Duration = Duration::from_secs(5);
/// The key prefix the tests use (the node's default).
const PREFIX: &str = "wsgate:";

/// The shipped config, the content of version 1.
fn base() -> GatewayConfig {
    serde_json::from_value(common::shipped_config()).expect("shipped config parses")
}

/// A config distinct from `base()` and from every other tag.
fn config(tag: &str) -> GatewayConfig {
    let mut config = base();
    config.vars.insert("tag".into(), vec![tag.into()]);
    config
}

/// `config` as stored version `version`.
fn at(version: u64, config: GatewayConfig) -> Versioned {
    Versioned { version, config }
}

/// What a refused compare-and-set returns.
fn stale(expected: u64, actual: u64) -> Result<u64, StoreError> {
    Err(StoreError::Stale { expected, actual })
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

/// `store.apply` of `config(tag)` by `ops`.
async fn apply(store: &dyn ConfigStore, replaces: u64, tag: &str) -> Result<u64, StoreError> {
    store
        .apply(replaces, config(tag), "ops", "config.apply")
        .await
}

/// `store.update_mapper` of `meta` by `ops`.
async fn push(store: &dyn ConfigStore, replaces: u64, meta: MapperMeta) -> Result<u64, StoreError> {
    store
        .update_mapper(replaces, meta, "ops", "mapper.push")
        .await
}

/// Asserts that `result` is `Unavailable`.
fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Metadata of mapper `name` with versions `1..=versions`, `promoted` promoted.
fn mapper(name: &str, versions: u32, promoted: u32) -> MapperMeta {
    MapperMeta {
        name: name.into(),
        versions: (1..=versions)
            .map(|version| MapperVersionMeta {
                version,
                hash: sha256_hex(format!("{name}-{version}").as_bytes()),
                size: 1000 + u64::from(version),
                uploader: "carol".into(),
                uploaded_at_ms: 1_700_000_000_000 + u64::from(version),
                world: "wsgate:mapper/event-mapper@0.1.0".into(),
                notes: format!("v{version}"),
                manifest: MapperManifest {
                    capabilities: vec!["clock".into()],
                    timeout_ms: Some(50),
                    memory_bytes: None,
                },
            })
            .collect(),
        promoted,
        revision: 0,
    }
}

/// A store under test, with the Redis it needs (dropped after the store).
struct Fixture {
    store: Arc<dyn ConfigStore>,
    _redis: Option<RedisServer>,
}

fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new(base())),
        _redis: None,
    }
}

async fn redis() -> Fixture {
    let server = RedisServer::new();
    let store = seeded(&server).await;
    Fixture {
        store,
        _redis: Some(server),
    }
}

/// A store on `server`, seeded with `base()` by this call.
async fn seeded(server: &RedisServer) -> Arc<RedisStore> {
    let store = RedisStore::connect(&server.url(), PREFIX).await.unwrap();
    assert!(store.seed_if_empty(base(), "test").await.unwrap());
    store
}

/// Runs each behaviour against both stores: `<behaviour>::memory` and `<behaviour>::redis`.
macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {$(
        mod $behaviour {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let fixture = super::memory();
                super::$behaviour(&*fixture.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let fixture = super::redis().await;
                super::$behaviour(&*fixture.store).await;
            }
        }
    )*};
}

conformance!(
    apply_stores_a_new_version,
    stale_writer_is_refused,
    audit_lists_changes_newest_first,
    old_version_applied_again_restores_it,
    modules_are_stored_once_by_hash,
    mappers_are_compare_and_set,
    revision_and_watch_follow_accepted_changes,
    api_keys_are_compare_and_set_and_secrets_stay_out_of_the_audit,
    the_audit_log_keeps_its_newest_entries,
);

async fn the_audit_log_keeps_its_newest_entries(store: &dyn ConfigStore) {
    let meta = mapper("busy", 1, 1);
    let mut revision = 0;
    for _ in 0..MAX_AUDIT_ENTRIES + 3 {
        revision = store
            .update_mapper(revision, meta.clone(), "dave", "mapper.promote")
            .await
            .unwrap();
    }
    let kept = store.audit(MAX_AUDIT_ENTRIES + 100).await.unwrap();
    assert_eq!(kept.len(), MAX_AUDIT_ENTRIES, "the oldest dropped");
    let newest = &kept[0];
    assert_eq!(newest.subject, "busy");
    assert_eq!(
        kept[MAX_AUDIT_ENTRIES - 1].seq,
        newest.seq + 1 - MAX_AUDIT_ENTRIES as u64,
        "numbering goes on"
    );
}

async fn apply_stores_a_new_version(store: &dyn ConfigStore) {
    let original = store.current().await.unwrap();
    assert_eq!(original, at(1, base()));

    let two = config("two");
    assert_ne!(two, base());
    assert_eq!(
        store.apply(1, two.clone(), "alice", "config.apply").await,
        Ok(2)
    );
    assert_eq!(store.current().await.unwrap(), at(2, two.clone()));
    assert_eq!(
        store.config_version(2).await.unwrap(),
        Some(at(2, two.clone()))
    );
    assert_eq!(
        store.config_version(1).await.unwrap(),
        Some(original.clone())
    );
    assert_eq!(store.config_version(0).await.unwrap(), None);
    assert_eq!(store.config_version(3).await.unwrap(), None);

    assert_eq!(apply(store, 2, "three").await, Ok(3));
    assert_eq!(store.current().await.unwrap(), at(3, config("three")));
    assert_eq!(store.config_version(2).await.unwrap(), Some(at(2, two)));
    assert_eq!(store.config_version(1).await.unwrap(), Some(original));
}

async fn stale_writer_is_refused(store: &dyn ConfigStore) {
    apply(store, 1, "two").await.unwrap();
    // Two writers read the same version...
    let read_by_a = store.current().await.unwrap().version;
    let read_by_b = store.current().await.unwrap().version;
    assert_eq!(read_by_a, 2);
    let audit = store.audit(100).await.unwrap();
    let revision = store.revision().await.unwrap();

    // ...the first wins, the second is refused.
    assert_eq!(
        store
            .apply(read_by_a, config("a"), "a", "config.apply")
            .await,
        Ok(3)
    );
    assert_eq!(
        store
            .apply(read_by_b, config("b"), "b", "config.apply")
            .await,
        stale(2, 3)
    );

    // Nothing of the second is stored.
    assert_eq!(store.current().await.unwrap(), at(3, config("a")));
    assert_eq!(store.config_version(4).await.unwrap(), None);
    let after = store.audit(100).await.unwrap();
    assert_eq!(after.len(), audit.len() + 1);
    assert_eq!(after[0].who, "a");
    assert_eq!(after[1..], audit[..]);
    assert_eq!(store.revision().await.unwrap(), revision + 1);

    // A writer from the future is refused too.
    assert_eq!(apply(store, 7, "c").await, stale(7, 3));
    assert_eq!(store.current().await.unwrap().version, 3);
}

async fn audit_lists_changes_newest_first(store: &dyn ConfigStore) {
    let earlier = store.audit(100).await.unwrap().len();
    let start = now_ms();
    let (two, three) = (config("two"), config("three"));
    store
        .apply(1, two.clone(), "alice", "config.apply")
        .await
        .unwrap();
    store
        .apply(2, three.clone(), "bob", "config.rollback")
        .await
        .unwrap();
    let end = now_ms();

    let entries = store.audit(100).await.unwrap();
    assert_eq!(entries.len(), earlier + 2);
    let (newest, older) = (&entries[0], &entries[1]);
    assert_eq!(
        (newest.who.as_str(), newest.action.as_str()),
        ("bob", "config.rollback")
    );
    assert_eq!(newest.subject, "config");
    assert_eq!((newest.before_version, newest.after_version), (2, 3));
    assert_eq!(
        (&newest.before, &newest.after),
        (&json(&two), &json(&three))
    );
    assert_eq!(
        (older.who.as_str(), older.action.as_str()),
        ("alice", "config.apply")
    );
    assert_eq!(older.subject, "config");
    assert_eq!((older.before_version, older.after_version), (1, 2));
    assert_eq!((&older.before, &older.after), (&json(&base()), &json(&two)));
    for entry in [newest, older] {
        assert!(
            (start..=end).contains(&entry.at_ms),
            "at_ms {} not in {start}..={end}",
            entry.at_ms
        );
    }
    // Sequence numbers increase by one, from 1.
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=entries.len() as u64).rev().collect::<Vec<_>>());

    // `limit` keeps the newest.
    assert_eq!(store.audit(1).await.unwrap(), entries[..1]);
    assert!(store.audit(0).await.unwrap().is_empty());
}

async fn old_version_applied_again_restores_it(store: &dyn ConfigStore) {
    apply(store, 1, "two").await.unwrap();
    apply(store, 2, "three").await.unwrap();

    let two = store.config_version(2).await.unwrap().unwrap();
    assert_eq!(
        store.apply(3, two.config, "ops", "config.rollback").await,
        Ok(4)
    );
    assert_eq!(store.current().await.unwrap(), at(4, config("two")));
    // The version rolled back from stays readable.
    assert_eq!(
        store.config_version(3).await.unwrap(),
        Some(at(3, config("three")))
    );

    let entry = &store.audit(1).await.unwrap()[0];
    assert_eq!(entry.action, "config.rollback");
    assert_eq!((entry.before_version, entry.after_version), (3, 4));
    assert_eq!(
        (&entry.before, &entry.after),
        (&json(&config("three")), &json(&config("two")))
    );

    // Back to the very first version.
    let first = store.config_version(1).await.unwrap().unwrap().config;
    assert_eq!(store.apply(4, first, "ops", "config.rollback").await, Ok(5));
    assert_eq!(store.current().await.unwrap(), at(5, base()));
}

async fn modules_are_stored_once_by_hash(store: &dyn ConfigStore) {
    let revision = store.revision().await.unwrap();
    let module = Bytes::from_static(b"\0asm\x01\0\0\0 module bytes \xff\xfe");
    let hash = sha256_hex(&module);
    assert_eq!(store.module(&hash).await.unwrap(), None);

    store.put_module(&hash, module.clone()).await.unwrap();
    store.put_module(&hash, module.clone()).await.unwrap();
    assert_eq!(store.module(&hash).await.unwrap(), Some(module.clone()));
    // The first copy stays: a second put under the same hash changes nothing.
    store
        .put_module(&hash, Bytes::from_static(b"other"))
        .await
        .unwrap();
    assert_eq!(store.module(&hash).await.unwrap(), Some(module));

    let other = Bytes::from_static(b"another module");
    store
        .put_module(&sha256_hex(&other), other.clone())
        .await
        .unwrap();
    assert_eq!(
        store.module(&sha256_hex(&other)).await.unwrap(),
        Some(other)
    );
    assert_eq!(
        store.module(&sha256_hex(b"never stored")).await.unwrap(),
        None
    );
    // Modules are content, not changes: only the metadata naming them bumps the revision.
    assert_eq!(store.revision().await.unwrap(), revision);
}

async fn mappers_are_compare_and_set(store: &dyn ConfigStore) {
    assert!(store.mappers().await.unwrap().is_empty());
    let audit = store.audit(100).await.unwrap().len();

    assert_eq!(push(store, 0, mapper("trade", 1, 1)).await, Ok(1));
    let pushed = mapper("trade", 2, 1);
    assert_eq!(
        store
            .update_mapper(1, pushed.clone(), "carol", "mapper.push")
            .await,
        Ok(2)
    );
    let promoted = mapper("trade", 2, 2);
    assert_eq!(
        store
            .update_mapper(2, promoted.clone(), "dave", "mapper.promote")
            .await,
        Ok(3)
    );

    // Stale revisions, and creating a name that exists, are refused and store nothing.
    assert_eq!(push(store, 2, mapper("trade", 3, 3)).await, stale(2, 3));
    assert_eq!(push(store, 0, mapper("trade", 3, 3)).await, stale(0, 3));
    assert_eq!(push(store, 1, mapper("book", 1, 1)).await, stale(1, 0));
    assert_eq!(
        store
            .update_mapper(0, mapper("book", 1, 1), "carol", "mapper.push")
            .await,
        Ok(1)
    );

    let mappers = store.mappers().await.unwrap();
    assert_eq!(mappers.keys().collect::<Vec<_>>(), ["book", "trade"]);
    let stored = |meta: &MapperMeta, revision| MapperMeta {
        revision,
        ..meta.clone()
    };
    assert_eq!(mappers["trade"], stored(&promoted, 3));
    assert_eq!(mappers["book"], stored(&mapper("book", 1, 1), 1));
    assert_eq!(mappers["trade"].version(2).unwrap().notes, "v2");

    let entries = store.audit(100).await.unwrap();
    assert_eq!(entries.len(), audit + 4);
    let book = &entries[0];
    assert_eq!(
        (book.who.as_str(), book.action.as_str()),
        ("carol", "mapper.push")
    );
    assert_eq!(book.subject, "book");
    assert_eq!((book.before_version, book.after_version), (0, 1));
    assert_eq!(book.before, serde_json::Value::Null);
    assert_eq!(book.after, json(&stored(&mapper("book", 1, 1), 1)));
    let promote = &entries[1];
    assert_eq!(
        (promote.who.as_str(), promote.action.as_str()),
        ("dave", "mapper.promote")
    );
    assert_eq!(promote.subject, "trade");
    assert_eq!((promote.before_version, promote.after_version), (1, 2));
    assert_eq!(promote.before, json(&stored(&pushed, 2)));
    assert_eq!(promote.after, json(&stored(&promoted, 3)));
    assert_eq!(entries[2].subject, "trade");
    assert_eq!(
        (entries[2].before_version, entries[2].after_version),
        (1, 1)
    );
    assert!(entries[..4].windows(2).all(|w| w[0].seq == w[1].seq + 1));
}

async fn revision_and_watch_follow_accepted_changes(store: &dyn ConfigStore) {
    let mut watch = store.watch();
    let start = store.revision().await.unwrap();
    assert!(start >= 1);
    seen(&mut watch, start).await;

    apply(store, 1, "two").await.unwrap();
    assert_eq!(store.revision().await.unwrap(), start + 1);
    seen(&mut watch, start + 1).await;

    push(store, 0, mapper("trade", 1, 1)).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), start + 2);
    seen(&mut watch, start + 2).await;

    // Refused changes do not count.
    assert!(apply(store, 1, "three").await.is_err());
    assert!(push(store, 0, mapper("trade", 2, 2)).await.is_err());
    assert_eq!(store.revision().await.unwrap(), start + 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*watch.borrow_and_update(), start + 2);
    assert!(!watch.has_changed().unwrap());
}

/// Waits until `watch` shows `revision`.
async fn api_keys_are_compare_and_set_and_secrets_stay_out_of_the_audit(store: &dyn ConfigStore) {
    let record = ApiKeyRecord {
        key: "key-alice".into(),
        user_id: "alice".into(),
        permissions: vec![Permission::UserStream, Permission::Trade],
        kind: KeyKind::Hmac,
        ip_allow: vec!["10.0.0.0/8".into()],
        disabled: false,
        created_at_ms: now_ms(),
        created_by: "ops".into(),
        revision: 0,
    };
    let revision_before = store.revision().await.unwrap();
    let put = store.put_api_key(0, record.clone(), Some("the-secret"), "ops", "key.create");
    assert_eq!(put.await, Ok(1));
    assert_eq!(
        store
            .put_api_key(0, record.clone(), Some("other"), "ops", "key.create")
            .await,
        stale(0, 1),
        "a second creation of the same key"
    );
    let stored = store.api_key("key-alice").await.unwrap().unwrap();
    assert_eq!(
        stored,
        ApiKeyRecord {
            revision: 1,
            ..record.clone()
        }
    );
    assert_eq!(
        store.api_key_secret("key-alice").await.unwrap().as_deref(),
        Some("the-secret")
    );
    let revoked = ApiKeyRecord {
        disabled: true,
        ..stored
    };
    let put = store.put_api_key(1, revoked, None, "ops", "key.revoke");
    assert_eq!(put.await, Ok(2));
    let all = store.api_keys().await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(all["key-alice"].disabled);
    assert_eq!(
        store.api_key_secret("key-alice").await.unwrap().as_deref(),
        Some("the-secret"),
        "a revoke keeps the secret"
    );
    assert_eq!(store.api_key("nobody").await.unwrap(), None);
    assert_eq!(
        store.revision().await.unwrap(),
        revision_before,
        "no reload"
    );
    let audit = store.audit(2).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .map(|e| (e.action.as_str(), e.subject.as_str(), e.after_version))
            .collect::<Vec<_>>(),
        [
            ("key.revoke", "key:key-alice", 2),
            ("key.create", "key:key-alice", 1)
        ]
    );
    assert_eq!(audit[0].after["disabled"], true);
    for entry in &audit {
        let text = serde_json::to_string(entry).unwrap();
        assert!(!text.contains("the-secret"), "{text}");
    }
}

async fn seen(watch: &mut watch::Receiver<u64>, revision: u64) {
    let waited = tokio::time::timeout(WAIT, watch.wait_for(|seen| *seen == revision))
        .await
        .is_ok();
    let last = *watch.borrow();
    assert!(
        waited,
        "watch never showed revision {revision}; last seen {last}"
    );
}

/// `call`, which must finish within a few seconds.
async fn bounded<T>(call: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("the store call hung")
}

/// Runs `args` on a new raw connection to `server`, behind the store's back; `$` in an
/// argument stands for the prefix.
async fn raw<T: redis::FromRedisValue>(server: &RedisServer, args: &[&str]) -> T {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(arg.replace('$', PREFIX));
    }
    cmd.query_async(&mut conn).await.unwrap()
}

/// The ids of the connections subscribed to the announcements.
async fn subscribers(server: &RedisServer) -> BTreeSet<u64> {
    let list: String = raw(server, &["CLIENT", "LIST", "TYPE", "pubsub"]).await;
    list.lines()
        .filter_map(|line| line.strip_prefix("id=")?.split(' ').next()?.parse().ok())
        .collect()
}

/// Waits until `count` connections listen for announcements.
async fn wait_subscribers(server: &RedisServer, count: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, listening): (String, usize) =
            raw(server, &["PUBSUB", "NUMSUB", "$config_update"]).await;
        if listening == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{listening} subscribers, never {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_nodes_seed_once_and_see_each_other() {
    let server = RedisServer::new();
    let mut nodes = Vec::new();
    for _ in 0..6 {
        nodes.push(RedisStore::connect(&server.url(), PREFIX).await.unwrap());
    }
    // Every node starts at once; exactly one seeds.
    let seeds: Vec<_> = (nodes.iter().enumerate())
        .map(|(i, node)| {
            let node = node.clone();
            let name = format!("node{i}");
            tokio::spawn(async move { node.seed_if_empty(config(&name), &name).await.unwrap() })
        })
        .collect();
    let mut seeded = Vec::new();
    for (i, seed) in seeds.into_iter().enumerate() {
        if seed.await.unwrap() {
            seeded.push(format!("node{i}"));
        }
    }
    assert_eq!(seeded.len(), 1, "seeded by {seeded:?}");
    let winner = &seeded[0];
    for node in &nodes {
        assert_eq!(node.current().await.unwrap(), at(1, config(winner)));
        assert_eq!(node.revision().await.unwrap(), 1);
    }
    let audit = nodes[0].audit(100).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (&audit[0].who, audit[0].action.as_str()),
        (winner, "config.seed")
    );
    assert_eq!((audit[0].before_version, audit[0].after_version), (0, 1));
    assert!(!nodes[1].seed_if_empty(base(), "late").await.unwrap());
    assert_eq!(nodes[1].current().await.unwrap(), at(1, config(winner)));

    // A change through one node reaches the other's watch through the announcement, well
    // before the next poll.
    let (a, b) = (nodes[0].clone(), nodes[1].clone());
    drop(nodes);
    wait_subscribers(&server, 2).await;
    let mut watch_b = b.watch();
    apply(&*a, 1, "from-a").await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), watch_b.wait_for(|r| *r == 2))
        .await
        .expect("node b did not hear of node a's change within 1 s")
        .unwrap();
    assert_eq!(b.current().await.unwrap(), at(2, config("from-a")));
    push(&*b, 0, mapper("trade", 1, 1)).await.unwrap();
    seen(&mut a.watch(), 3).await;
    assert_eq!(a.mappers().await.unwrap()["trade"].revision, 1);

    // A lost announcement is made up for by polling, which also checks the subscription is
    // alive without replacing a healthy one.
    let listeners = subscribers(&server).await;
    assert_eq!(listeners.len(), 2);
    let _: u64 = raw(&server, &["INCR", "$revision"]).await;
    seen(&mut watch_b, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(subscribers(&server).await, listeners);

    // A dropped store stops its watcher.
    drop(a);
    wait_subscribers(&server, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_unavailable_then_recovered() {
    let mut server = RedisServer::new();
    let store = seeded(&server).await;
    let other = RedisStore::connect(&server.url(), PREFIX).await.unwrap();
    let (mut watch, mut other_watch) = (store.watch(), other.watch());
    apply(&*store, 1, "two").await.unwrap();
    seen(&mut other_watch, 2).await;

    server.stop();
    assert_unavailable(bounded(store.current()).await);
    assert_unavailable(bounded(apply(&*store, 2, "three")).await);
    assert_unavailable(bounded(store.revision()).await);
    assert_unavailable(bounded(store.audit(10)).await);
    assert_unavailable(bounded(store.module("00")).await);
    assert_unavailable(bounded(store.seed_if_empty(base(), "test")).await);
    // Watchers keep the last revision meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (*watch.borrow_and_update(), *other_watch.borrow_and_update()),
        (2, 2)
    );

    // The same socket again, empty: the first call after it is back may still fail.
    server.start();
    let deadline = Instant::now() + Duration::from_secs(15);
    let seeded = loop {
        match bounded(store.seed_if_empty(config("reseeded"), "test")).await {
            Ok(seeded) => break seeded,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the store did not come back: {error}"),
        }
    };
    assert!(seeded);
    assert_eq!(store.current().await.unwrap(), at(1, config("reseeded")));

    // Both watchers reconnected: they see the re-seeded revision (lower than before: the data
    // was lost) and what follows, the other node through its subscription.
    tokio::time::timeout(Duration::from_secs(10), other_watch.wait_for(|r| *r == 1))
        .await
        .expect("the other node's watcher did not come back")
        .unwrap();
    seen(&mut watch, 1).await;
    wait_subscribers(&server, 2).await;
    apply(&*store, 1, "after").await.unwrap();
    apply(&*store, 2, "after2").await.unwrap();
    seen(&mut other_watch, 3).await;
    seen(&mut watch, 3).await;
    assert_eq!(other.current().await.unwrap(), at(3, config("after2")));
    let seqs: Vec<u64> = store
        .audit(10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [3, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bad_stored_data_is_unavailable() {
    let server = RedisServer::new();
    let store = seeded(&server).await;
    push(&*store, 0, mapper("trade", 1, 1)).await.unwrap();

    let _: () = raw(&server, &["HSET", "$config:versions", "1", "{not json"]).await;
    assert_unavailable(store.current().await);
    assert_unavailable(store.config_version(1).await);

    let _: () = raw(&server, &["HSET", "$mappers", "trade", "[1,2"]).await;
    assert_unavailable(store.mappers().await);
    assert_unavailable(push(&*store, 1, mapper("trade", 2, 2)).await);

    let _: () = raw(&server, &["LPUSH", "$audit", "garbage"]).await;
    assert_unavailable(store.audit(10).await);

    let _: () = raw(&server, &["SET", "$config:version", "one"]).await;
    assert_unavailable(store.current().await);
    assert_unavailable(apply(&*store, 1, "two").await);

    let _: () = raw(&server, &["SET", "$revision", "many"]).await;
    assert_unavailable(store.revision().await);
    // The refused writes changed nothing.
    let revision: String = raw(&server, &["GET", "$revision"]).await;
    assert_eq!(revision, "many");
    let audit: usize = raw(&server, &["LLEN", "$audit"]).await;
    assert_eq!(audit, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_keys_in_redis_follow_the_lifecycle() {
    let server = RedisServer::new();
    let store = wsgate::auth::listen_keys::RedisListenKeys::connect(&server.url(), PREFIX)
        .await
        .unwrap();
    wsgate::auth::listen_keys::conformance::lifecycle(&*store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_keys_in_memory_follow_the_lifecycle() {
    let store = wsgate::auth::listen_keys::MemoryListenKeys::new();
    wsgate::auth::listen_keys::conformance::lifecycle(&store).await;
}
