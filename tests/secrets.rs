//! Secrets in the dynamic config: a NATS datasource's password (and credentials in URLs) are
//! stored as given, so the node logs in with them, but never leave the node: not in any admin
//! API answer (config, stored versions, history, diff, apply and rollback answers, errors,
//! status, readiness), not in the CLI's output, not in the node's log. A config read back with
//! the `***` placeholders applies without losing the stored password.
//!
//! The node runs against a `nats-server` of the test's own that requires a user and password,
//! with its log captured at debug level (stdout and stderr), and datasources that fail: a
//! server that is not there, a wrong password, a Redis that is not there.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::trades::match_event;
use serde_json::{json, Value};

const USER: &str = "wsgate";

/// A string found nowhere else: a secret whose every appearance the test can spot.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{:x}-{nanos:x}", std::process::id())
}

/// A free TCP port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A `nats-server` that requires `USER` and `password`, on a random port.
struct AuthNats {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl AuthNats {
    fn start(password: &str) -> AuthNats {
        let binary = std::env::var_os("WSGATE_TEST_NATS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let usr = PathBuf::from("/usr/bin/nats-server");
                if usr.exists() {
                    usr
                } else {
                    PathBuf::from("nats-server")
                }
            });
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("nats.log");
        let child = Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                "-1",
                "--user",
                USER,
                "--pass",
                password,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        // Killed when dropped, also if it never gets ready.
        let mut server = AuthNats {
            child,
            port: 0,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let port = log
                .lines()
                .find_map(|line| line.split("Listening for client connections on ").nth(1))
                .and_then(|addr| addr.trim().rsplit(':').next()?.parse::<u16>().ok());
            if let (Some(port), true) = (port, log.contains("Server is ready")) {
                server.port = port;
                return server;
            }
            assert!(Instant::now() < deadline, "nats-server not ready: {log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for AuthNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `wsgate serve` whose stdout and stderr are captured, logging at debug level.
struct Node {
    child: Child,
    admin: SocketAddr,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Node {
    fn start(config: &Value) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gateway.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--config")
            .arg(&config_path)
            .arg("--mappers-dir")
            .arg(common::mappers_dir())
            .args(["--admin-token", common::TEST_TOKEN])
            .env("WSGATE_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("starting wsgate");
        let mut node = Node {
            child,
            admin: "127.0.0.1:0".parse().unwrap(),
            addr: "127.0.0.1:0".parse().unwrap(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("wsgate exited ({status}):\n{}", node.log());
            }
            if let Some((addr, admin)) = common::ready_addresses(&node.log()) {
                node.addr = addr;
                node.admin = admin;
                if node.get("/readyz").0 == 200 {
                    return node;
                }
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", node.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the process wrote, stdout then stderr.
    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap();
        format!("{}{}", read("stdout"), read("stderr"))
    }

    fn get(&self, path: &str) -> (u16, String) {
        common::http_get_auth(self.admin, path, common::TEST_TOKEN).unwrap_or((0, String::new()))
    }

    /// `method path` with a JSON body on the admin API.
    fn send(&self, method: &str, path: &str, body: &Value) -> (u16, String) {
        common::admin_send(self.admin, method, path, body)
    }

    fn cli(&self, args: &[&str]) -> common::CliOutput {
        common::run_cli(self.admin, args)
    }

    /// Stops the node (SIGTERM) and waits for it to exit, so the log is complete.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-s", "TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The NATS datasource, reading `trade.>` with `USER` and `password`.
fn nats_datasource(url: &str, password: &str) -> Value {
    json!({"version": 1, "type": "nats", "name": "nats-md", "properties": {
        "servers": [url], "subjects": ["trade.>"], "user": USER, "password": password,
        "reconnect_time_wait_ms": 100}})
}

fn config(url: &str, password: &str) -> Value {
    json!({
        "vars": {"symbol": ["btcusdt"]},
        "datasource": [nats_datasource(url, password)],
        "topics": [{"version": 1, "topic": "{symbol}@trade", "auth": "public"}],
        "routes": [{
            "id": "nats-trades", "version": 1, "data_source": "nats-md",
            "upstream": ["trade.>"],
            "mappings": [{"mapper": "binance_trade", "fanout_topic": "md.{symbol}.trade",
                          "ws_topic": "{symbol}@trade"}]
        }]
    })
}

/// Publishes trades with ids from `*id` on until the client sees one (the node's NATS session
/// with the stored password works); returns the id seen.
async fn a_trade_arrives(
    publisher: &async_nats::Client,
    client: &mut common::Client,
    id: &mut u64,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no trade reached the client");
        *id += 1;
        publisher
            .publish("trade.BTCUSDT", Bytes::from(match_event(*id)))
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        let wait = tokio::time::timeout(
            Duration::from_millis(200),
            common::next_seen(client, Duration::from_secs(5)),
        );
        if let Ok(common::Seen::Json(message)) = wait.await {
            if message["stream"] == "btcusdt@trade" {
                return message["data"]["t"].as_u64().unwrap();
            }
        }
    }
}

/// None of `secrets` in `text`.
fn assert_hidden(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret}:\n{text}"
        );
    }
}

fn write_json(dir: &Path, name: &str, value: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_nats_password_is_used_but_never_shown_nor_logged() {
    let password = unique("natspw");
    let other_password = unique("newpw");
    let wrong_password = unique("wrongpw");
    let redis_password = unique("redispw");
    let secrets = [
        password.as_str(),
        other_password.as_str(),
        wrong_password.as_str(),
        redis_password.as_str(),
    ];
    let nats = AuthNats::start(&password);
    let mut node = Node::start(&config(&nats.url(), &password));
    let files = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let publisher = runtime.block_on(async {
        async_nats::ConnectOptions::with_user_and_password(USER.into(), password.clone())
            .connect(nats.url())
            .await
            .expect("the publisher logs in")
    });
    let mut client = runtime.block_on(async {
        let (client, _) = tokio_tungstenite::connect_async(format!(
            "ws://{}/stream?streams=btcusdt@trade",
            node.addr
        ))
        .await
        .unwrap();
        client
    });
    let mut id = 0;
    // The node logged in with the password as stored.
    runtime.block_on(a_trade_arrives(&publisher, &mut client, &mut id));

    // The config, as the API and the CLI show it: the password redacted, the rest as stored.
    let (status, body) = node.get("/api/v1/config");
    assert_eq!(status, 200, "{body}");
    assert_hidden("GET /api/v1/config", &body, &secrets);
    let shown: Value = serde_json::from_str(&body).unwrap();
    let properties = &shown["config"]["datasource"][0]["properties"];
    assert_eq!(properties["password"], "***", "{body}");
    assert_eq!(properties["user"], USER);
    assert_eq!(properties["servers"][0], nats.url());
    let (status, body) = node.get("/api/v1/config/versions/1");
    assert_eq!(status, 200, "{body}");
    assert_hidden("GET /api/v1/config/versions/1", &body, &secrets);
    let get = node.cli(&["config", "get"]);
    assert!(get.ok, "{get:?}");
    assert_hidden("wsgate config get", &get.stdout, &secrets);

    // What `config get` printed, edited and applied: the placeholder keeps the stored
    // password, and the restarted source logs in with it.
    let mut edited: Value = serde_json::from_str(&get.stdout).unwrap();
    let mut edited = edited["config"].take();
    edited["datasource"][0]["properties"]["reconnect_time_wait_ms"] = json!(150);
    let edited_path = write_json(files.path(), "edited.json", &edited);
    let apply = node.cli(&["config", "apply", &edited_path]);
    assert!(apply.ok, "{apply:?}");
    assert!(apply.stdout.contains("applied as version 2"), "{apply:?}");
    assert!(
        apply
            .stdout
            .contains("properties.reconnect_time_wait_ms: 100 -> 150"),
        "{apply:?}"
    );
    assert_hidden("wsgate config apply", &apply.stdout, &secrets);
    assert_hidden("wsgate config apply", &apply.stderr, &secrets);
    let before = id;
    let seen = runtime.block_on(a_trade_arrives(&publisher, &mut client, &mut id));
    assert!(seen > before, "no trade after the apply");
    let (_, body) = node.get("/api/v1/config");
    let mut shown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["version"], 2);
    assert_eq!(
        shown["config"]["datasource"][0]["properties"]["password"],
        "***"
    );
    // From here on, changes are made to the current config as read back.
    let edited = shown["config"].take();

    // A diff says that the password would change, and shows neither value.
    let mut changed = edited.clone();
    changed["datasource"][0]["properties"]["password"] = json!(other_password);
    let changed_path = write_json(files.path(), "changed.json", &changed);
    let diff = node.cli(&["config", "diff", &changed_path]);
    assert!(diff.ok, "{diff:?}");
    assert!(
        diff.stdout.contains("properties.password: secret changed"),
        "{diff:?}"
    );
    assert_hidden("wsgate config diff", &diff.stdout, &secrets);
    let (status, body) = node.send("POST", "/api/v1/config/diff", &json!({"config": changed}));
    assert_eq!(status, 200, "{body}");
    assert_hidden("POST /api/v1/config/diff", &body, &secrets);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["diff"]["entries"][0]["fields"][0],
        json!({"path": "properties.password", "change": "changed", "secret": true}),
        "{body}"
    );

    // Refused configs carrying the password: the errors do not echo it.
    let url_with_password = format!("nats://{USER}:{password}@127.0.0.1:0");
    let mut bad_url = edited.clone();
    bad_url["datasource"][0]["properties"]["servers"] = json!([url_with_password]);
    bad_url["datasource"][0]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("password");
    bad_url["datasource"][0]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("user");
    let (status, body) = node.send("PUT", "/api/v1/config", &json!({"config": bad_url}));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("properties.servers[0]"), "{body}");
    assert_hidden("a refused URL", &body, &secrets);
    let bad_url_path = write_json(files.path(), "bad_url.json", &bad_url);
    let refused = node.cli(&["config", "apply", &bad_url_path]);
    assert!(!refused.ok);
    assert_hidden("wsgate config apply (refused)", &refused.stderr, &secrets);
    let mut misplaced = edited.clone();
    misplaced["datasource"][0]["properties"]["password"] = json!(other_password);
    misplaced["datasource"][0]["version"] = json!(other_password);
    let (status, body) = node.send("PUT", "/api/v1/config", &json!({"config": misplaced}));
    assert_eq!(status, 422, "{body}");
    assert_hidden("a config that does not parse", &body, &secrets);
    let (status, body) = node.send("POST", "/api/v1/config/diff", &json!({"config": misplaced}));
    assert_eq!(status, 422, "{body}");
    assert_hidden("a diff that does not parse", &body, &secrets);
    // A placeholder with no stored secret behind it is refused, naming the field.
    let mut new_source = edited.clone();
    let mut copy = edited["datasource"][0].clone();
    copy["name"] = json!("nats-copy");
    new_source["datasource"].as_array_mut().unwrap().push(copy);
    let (status, body) = node.send("PUT", "/api/v1/config", &json!({"config": new_source}));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("datasource[1].properties.password"), "{body}");

    // Datasources that fail: nobody listening, a wrong password, a Redis that is not there.
    let mut failing = edited.clone();
    let sources = failing["datasource"].as_array_mut().unwrap();
    sources.push(
        json!({"version": 1, "type": "nats", "name": "nats-down", "properties": {
        "servers": [format!("nats://{USER}:{password}@127.0.0.1:{}", closed_port())],
        "subjects": ["down.>"], "reconnect_time_wait_ms": 100}}),
    );
    sources.push(
        json!({"version": 1, "type": "nats", "name": "nats-wrong", "properties": {
        "servers": [nats.url()], "subjects": ["wrong.>"], "user": USER,
        "password": wrong_password, "reconnect_time_wait_ms": 100}}),
    );
    sources.push(
        json!({"version": 1, "type": "redis_stream", "name": "redis-down",
        "properties": {"url": format!("redis://default:{redis_password}@127.0.0.1:{}",
                                      closed_port()),
                       "streams": ["md"]}}),
    );
    failing["topics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"version": 1, "topic": "{symbol}@aggTrade", "auth": "public"}));
    for (id, source, upstream) in [
        ("down", "nats-down", "down.>"),
        ("wrong", "nats-wrong", "wrong.>"),
        ("redis", "redis-down", "md"),
    ] {
        failing["routes"].as_array_mut().unwrap().push(json!({
            "id": id, "version": 1, "data_source": source, "upstream": [upstream],
            "mappings": [{"mapper": "binance_agg_trade", "fanout_topic": "md.{symbol}.aggTrade",
                          "ws_topic": "{symbol}@aggTrade"}]
        }));
    }
    let (status, body) = node.send("PUT", "/api/v1/config", &json!({"config": failing}));
    assert_eq!(status, 200, "{body}");
    assert_hidden("the apply answer", &body, &secrets);
    // Each failure shows: in the log (a core NATS source that never connected still counts as
    // up in /readyz, so the log is where its failure is seen) and in /readyz for Redis.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, ready) = node.get("/readyz");
        let log = node.log();
        let failed = |name: &str, what: &str| {
            log.lines()
                .any(|line| line.contains(&format!("datasource={name}")) && line.contains(what))
        };
        if ready.contains("redis-down")
            && failed("nats-down", "nats connection event")
            && failed("nats-wrong", "authorization violation")
            && failed("redis-down", "redis connect failed")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failing sources are not reported: {ready}\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let them retry a few times.
    std::thread::sleep(Duration::from_secs(2));
    let (_, ready) = node.get("/readyz");
    assert_hidden("/readyz", &ready, &secrets);
    let (_, status_body) = node.get("/api/v1/status");
    assert_hidden("/api/v1/status", &status_body, &secrets);

    // The audit log, through the API and the CLI; a rollback's answer.
    let (status, body) = node.get("/api/v1/config/history?limit=100");
    assert_eq!(status, 200, "{body}");
    assert_hidden("GET /api/v1/config/history", &body, &secrets);
    let history: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        history[0]["after"]["datasource"][0]["properties"]["password"],
        "***"
    );
    let cli_history = node.cli(&["config", "history"]);
    assert!(cli_history.ok, "{cli_history:?}");
    assert_hidden("wsgate config history", &cli_history.stdout, &secrets);
    let rollback = node.cli(&["config", "rollback", "1"]);
    assert!(rollback.ok, "{rollback:?}");
    assert_hidden("wsgate config rollback", &rollback.stdout, &secrets);
    assert_hidden("wsgate config rollback", &rollback.stderr, &secrets);
    let before = id;
    let seen = runtime.block_on(a_trade_arrives(&publisher, &mut client, &mut id));
    assert!(seen > before, "no trade after the rollback");

    // The whole log, stdout and stderr at debug level: the failures are in it, the secrets
    // are not.
    node.stop();
    let log = node.log();
    assert!(log.contains("source down"), "{log}");
    assert_hidden("the node's log", &log, &secrets);
}
