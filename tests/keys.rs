//! API keys through the operator's tools against a real node: `wsgate key create|list|revoke`
//! and `/api/v1/keys`. A secret is shown once, at creation, and never again: not by the listing,
//! not in the audit log, not in the node's log.

mod common;

use common::{http_get_auth, shipped_config, Gateway, TEST_TOKEN};
use serde_json::Value;

/// The value after `label` on its line of `text`.
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{label}` in {text}"))
}

fn api(gateway: &Gateway, path: &str) -> Value {
    let (status, body) = http_get_auth(gateway.admin, path, TEST_TOKEN).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A node with the shipped config minus the demo accounts (whose keys the node would seed).
fn without_demo_accounts() -> Gateway {
    let mut config = shipped_config();
    for datasource in config["datasource"].as_array_mut().unwrap() {
        datasource["properties"]
            .as_object_mut()
            .unwrap()
            .remove("accounts");
    }
    Gateway::start_with(config, &["--admin-token", TEST_TOKEN])
}

#[test]
fn keys_are_created_listed_and_revoked_and_a_secret_is_shown_once() {
    let gateway = without_demo_accounts();
    let created = gateway.cli(&[
        "key",
        "create",
        "--user",
        "alice",
        "--permissions",
        "user-stream,trade",
        "--ip",
        "127.0.0.0/8",
    ]);
    assert!(created.ok, "{created:?}");
    let key = field(&created.stdout, "api key:").to_string();
    let secret = field(&created.stdout, "secret:").to_string();
    assert_eq!((key.len(), secret.len()), (64, 64));
    assert_ne!(key, secret);
    assert!(created.stderr.contains("shown this once"), "{created:?}");

    let listed = gateway.cli(&["key", "list"]);
    assert!(listed.ok, "{listed:?}");
    assert!(
        listed.stdout.contains(&format!(
            "{key}  user=alice type=hmac permissions=user-stream,trade ip=127.0.0.0/8 active"
        )),
        "{listed:?}"
    );
    let keys = api(&gateway, "/api/v1/keys");
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys["keys"][0]["user_id"], "alice");
    let history = api(&gateway, "/api/v1/config/history?limit=5");
    assert_eq!(history[0]["action"], "key.create");
    assert_eq!(history[0]["subject"], format!("key:{key}"));
    for shown in [&listed.stdout, &keys.to_string(), &history.to_string()] {
        assert!(!shown.contains(&secret), "the secret leaked: {shown}");
    }

    let revoked = gateway.cli(&["key", "revoke", &key]);
    assert!(revoked.ok, "{revoked:?}");
    assert!(revoked.stdout.contains("revoked"), "{revoked:?}");
    let listed = gateway.cli(&["key", "list"]);
    assert!(listed.stdout.contains(" revoked"), "{listed:?}");
    let history = api(&gateway, "/api/v1/config/history?limit=1");
    assert_eq!(history[0]["action"], "key.revoke");
    assert_eq!(history[0]["after"]["disabled"], true);

    let unknown = gateway.cli(&["key", "revoke", "no-such-key"]);
    assert!(
        !unknown.ok && unknown.stderr.contains("not found"),
        "{unknown:?}"
    );
    assert!(
        !gateway.log().contains(&secret),
        "the secret is in the node's log"
    );
}

#[test]
fn an_ed25519_key_keeps_only_the_public_key() {
    let gateway = without_demo_accounts();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("bob.pem");
    std::fs::write(
        &pem,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let created = gateway.cli(&[
        "key",
        "create",
        "--user",
        "bob",
        "--permissions",
        "trade",
        "--ed25519-public-key",
        pem.to_str().unwrap(),
    ]);
    assert!(created.ok, "{created:?}");
    assert!(!created.stdout.contains("secret:"), "{created:?}");
    let keys = api(&gateway, "/api/v1/keys");
    let kind = &keys["keys"][0]["kind"];
    assert_eq!(kind["type"], "ed25519");
    assert!(kind["public_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
}

#[test]
fn bad_key_requests_are_refused_naming_the_field_and_store_nothing() {
    let gateway = without_demo_accounts();
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("bad.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let not_a_key = not_a_key.to_str().unwrap();
    for (args, field) in [
        (
            vec!["--user", "alice", "--permissions", "admin"],
            "permissions",
        ),
        (
            vec!["--user", "two words", "--permissions", "trade"],
            "user_id",
        ),
        (
            vec![
                "--user",
                "alice",
                "--permissions",
                "trade",
                "--ip",
                "10.0.0.0/33",
            ],
            "ip_allow",
        ),
        (
            vec![
                "--user",
                "alice",
                "--permissions",
                "trade",
                "--ed25519-public-key",
                not_a_key,
            ],
            "ed25519_public_key",
        ),
    ] {
        let mut command = vec!["key", "create"];
        command.extend(args);
        let refused = gateway.cli(&command);
        assert!(!refused.ok, "{command:?} was accepted");
        assert!(
            refused.stderr.contains(&format!("{field}:")),
            "{command:?}: {refused:?}"
        );
    }
    assert_eq!(api(&gateway, "/api/v1/keys")["keys"], serde_json::json!([]));
}
