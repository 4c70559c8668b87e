//! Graceful shutdown: SIGTERM makes the node unready, tells every client `serverShutdown`, closes
//! them with 1001 and exits within its configured time.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn sigterm_sends_server_shutdown_then_1001_and_exits_in_time() {
    let mut gateway = Gateway::start(&["--shutdown-timeout", "3s"]);
    let mut raw = gateway.connect("/ws/btcusdt@trade").await;
    let mut combined = gateway.connect("/stream?streams=btcusdt@depth@100ms").await;
    next_json(&mut raw, Duration::from_secs(10)).await;
    next_json(&mut combined, Duration::from_secs(10)).await;

    gateway.signal("TERM");

    let notice = loop {
        let message = next_json(&mut raw, Duration::from_secs(5)).await;
        if message["e"] == "serverShutdown" {
            break message;
        }
    };
    assert!(notice["E"].is_i64());
    assert_eq!(expect_close(&mut raw, Duration::from_secs(5)).await.0, 1001);
    let notice = loop {
        let message = next_json(&mut combined, Duration::from_secs(5)).await;
        if message["stream"] == "!serverShutdown" {
            break message;
        }
    };
    assert_eq!(notice["data"]["e"], "serverShutdown");
    assert_eq!(
        expect_close(&mut combined, Duration::from_secs(5)).await.0,
        1001
    );
    drop((raw, combined));
    let took = gateway
        .wait_exit(Duration::from_secs(5))
        .expect("wsgate did not exit after SIGTERM");
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
}

#[tokio::test]
async fn a_client_that_ignores_the_close_does_not_hold_shutdown_past_its_timeout() {
    let mut gateway = Gateway::start(&["--shutdown-timeout", "2s"]);
    // A raw client that never reads nor answers.
    let _stuck = RawClient::connect(gateway.addr, "/ws/btcusdt@depth@100ms");
    std::thread::sleep(Duration::from_millis(500));
    gateway.signal("TERM");
    let took = gateway
        .wait_exit(Duration::from_secs(8))
        .expect("wsgate did not exit after SIGTERM");
    assert!(took < Duration::from_secs(4), "exit took {took:?}");
}

#[tokio::test]
async fn readyz_reports_ready_then_health_stays_ok() {
    let gateway = Gateway::start(&[]);
    assert_eq!(gateway.http_get("/readyz").unwrap().0, 200);
    assert_eq!(gateway.http_get("/healthz").unwrap().0, 200);
    let (status, body) = gateway.http_get("/metrics").unwrap();
    assert_eq!(status, 200);
    for name in [
        "wsgate_connections",
        "wsgate_messages_in_total",
        "wsgate_mapper_calls_total",
        "wsgate_mapper_duration_seconds",
        "wsgate_process_resident_memory_bytes",
    ] {
        assert!(body.contains(name), "/metrics lacks {name}");
    }
}
