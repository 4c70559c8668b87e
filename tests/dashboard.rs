//! The operator dashboard in a real browser: Debian's Chromium, driven by
//! `tests/dashboard/drive.mjs` (playwright-core), against the dashboard served by one node of a
//! three-node cluster on real Redis and NATS. Nothing shows without the admin token; every node
//! and live traffic appear; a mapper promoted and rolled back from the UI changes what a
//! WebSocket client on another node receives.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use common::nats::NatsServer;
use common::redis::RedisServer;
use common::{Gateway, TEST_TOKEN};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// Longest the whole browser run may take.
const DRIVER_LIMIT: Duration = Duration::from_secs(300);
/// The operator name entered in the dashboard, which the audit log must record.
const OPERATOR: &str = "dashboard-operator";
/// Longest a client may take to see a mapper change.
const SWAP_LIMIT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the browser test needs and lacks: the dashboard build, Chromium, Node.js, playwright-core.
fn missing_parts() -> Vec<String> {
    let mut missing = Vec::new();
    if !repo().join("target/dashboard/index.html").exists() {
        missing.push("the dashboard build target/dashboard/index.html (make dashboard)".into());
    }
    if !chromium().exists() {
        missing.push(format!(
            "{} (apt-get install chromium)",
            chromium().display()
        ));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        missing.push("node (Node.js 20 or later)".into());
    }
    if !repo()
        .join("tests/dashboard/node_modules/playwright-core")
        .exists()
    {
        missing.push("playwright-core in tests/dashboard (make dashboard-browser)".into());
    }
    missing
}

/// Pushes `tagged_trade.wasm` as a new version of `binance_trade` without promoting it.
fn push_tagged_version(admin: std::net::SocketAddr) -> u64 {
    let module = std::fs::read(common::mappers_dir().join("tagged_trade.wasm")).unwrap();
    let sample: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("mappers/samples/trade.json")).unwrap(),
    )
    .unwrap();
    let body = json!({
        "module_base64": base64::engine::general_purpose::STANDARD.encode(module),
        "sample": sample,
        "notes": "tagged format",
    });
    let (status, answer) =
        common::admin_send(admin, "POST", "/api/v1/mappers/binance_trade", &body);
    assert_eq!(status, 200, "push: {answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["promoted"], 1, "the push must not promote: {answer}");
    answer["version"]["version"].as_u64().unwrap()
}

/// Reads `btcusdt@trade` until the connection ends; the watch holds (trades seen, the last one
/// was tagged).
fn watch_trades(mut client: common::Client) -> watch::Receiver<(u64, bool)> {
    let (tx, rx) = watch::channel((0, false));
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let common::Seen::Json(trade) =
                common::next_seen(&mut client, Duration::from_secs(60)).await
            else {
                return;
            };
            assert_eq!(trade["e"], "trade", "{trade}");
            seen += 1;
            let tagged = trade["mapper"] == "tagged_trade";
            if tx.send((seen, tagged)).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits until a trade that arrives from now on is `tagged` (or not).
async fn wait_format(trades: &mut watch::Receiver<(u64, bool)>, tagged: bool) {
    let what = if tagged { "tagged" } else { "untagged" };
    tokio::time::timeout(SWAP_LIMIT, async {
        trades.borrow_and_update();
        loop {
            trades.changed().await.expect("the client reader stopped");
            if trades.borrow_and_update().1 == tagged {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the client saw no {what} trade within {SWAP_LIMIT:?}"));
}

/// The audit log's actions on `subject` and who did them, newest first.
fn audit_actions(admin: std::net::SocketAddr, subject: &str) -> Vec<(String, String)> {
    let (status, body) =
        common::http_get_auth(admin, "/api/v1/config/history?limit=20", TEST_TOKEN).unwrap();
    assert_eq!(status, 200, "{body}");
    let entries: Vec<Value> = serde_json::from_str(&body).unwrap();
    entries
        .iter()
        .filter(|e| e["subject"] == subject)
        .map(|e| {
            let field = |name: &str| e[name].as_str().unwrap().to_string();
            (field("action"), field("who"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_promotes_and_rolls_back_a_mapper_from_the_dashboard() {
    let missing = missing_parts();
    if !missing.is_empty() {
        let list = missing.join("; ");
        assert!(
            std::env::var_os("WSGATE_TEST_REQUIRE_BROWSER").is_none(),
            "the browser test needs: {list}"
        );
        eprintln!("skipping the dashboard browser test: missing {list}");
        return;
    }
    let redis = RedisServer::new();
    let nats = NatsServer::new();
    let dashboard_dir = repo().join("target/dashboard");
    let args = [
        "--admin-token",
        TEST_TOKEN,
        "--dashboard-dir",
        dashboard_dir.to_str().unwrap(),
    ];
    let config = common::shipped_config();
    let ids = ["node-a", "node-b", "node-c"];
    let nodes: Vec<Gateway> = ids
        .iter()
        .map(|id| Gateway::cluster_node_with(&config, &redis.url(), &nats.url(), id, &args))
        .collect();
    let served = &nodes[0];

    // The API's new endpoints refuse a caller without the token; the app itself is public.
    for path in ["/api/v1/cluster", "/api/v1/metrics"] {
        let (status, body) = served.http_get(path).unwrap();
        assert_eq!(status, 401, "{path} without a token: {body}");
    }
    let (status, page) = served.http_get("/dashboard/").unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"root\""), "{page}");

    let version = push_tagged_version(served.admin);
    // A client on another node than the one whose dashboard is open.
    let client = nodes[1].connect("/ws/btcusdt@trade").await;
    let mut trades = watch_trades(client);
    wait_format(&mut trades, false).await;

    let artefacts = repo().join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let screenshot = artefacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut driver = tokio::process::Command::new("node")
        .arg(repo().join("tests/dashboard/drive.mjs"))
        .env(
            "DASHBOARD_URL",
            format!("http://{}/dashboard/", served.admin),
        )
        .env("ADMIN_TOKEN", TEST_TOKEN)
        .env("SCREENSHOT", &screenshot)
        .env("EXPECT_NODES", ids.join(","))
        .env("MAPPER", "binance_trade")
        .env("VERSION", version.to_string())
        .env("OPERATOR", OPERATOR)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting node tests/dashboard/drive.mjs");
    let mut stdin = driver.stdin.take().unwrap();
    let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();

    let run = async {
        let mut said = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            match line.trim() {
                // The UI shows the new version promoted: the client's trades switch to it.
                "PROMOTED" => wait_format(&mut trades, true).await,
                // The UI shows the version before: the client's trades switch back.
                "ROLLED_BACK" => wait_format(&mut trades, false).await,
                other => panic!("unexpected line from the driver: {other}"),
            }
            said.push(line.trim().to_string());
            stdin.write_all(b"NEXT\n").await.unwrap();
            stdin.flush().await.unwrap();
        }
        (said, driver.wait().await.unwrap())
    };
    let (said, status) = tokio::time::timeout(DRIVER_LIMIT, run)
        .await
        .expect("the browser run did not finish in time");
    assert!(status.success(), "the browser run failed ({status})");
    assert_eq!(said, ["PROMOTED", "ROLLED_BACK"]);
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(
        png.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        screenshot.display()
    );

    // Both actions went through the API in the operator's name, and the rollback restored the
    // version before.
    let (_, meta) =
        common::http_get_auth(served.admin, "/api/v1/mappers/binance_trade", TEST_TOKEN).unwrap();
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["promoted"], 1, "{meta}");
    let actions = audit_actions(served.admin, "binance_trade");
    let expected =
        ["mapper.rollback", "mapper.promote"].map(|a| (a.to_string(), OPERATOR.to_string()));
    assert_eq!(actions[..2], expected, "{actions:?}");
    eprintln!("dashboard screenshot: {}", screenshot.display());
}
