//! The retry policy against injected faults (OTK-08).

use crate::common::{options, server};
use newt_client::Client;
use newt_testkit::{Action, Proxy, Rule};
use std::time::{Duration, Instant};

fn status(code: u16) -> Action {
    Action::Status {
        code,
        retry_after_secs: None,
        retry_after_ms: None,
    }
}

/// OTK-08: `/keys/upload` fails twice (5xx), then the identical body goes
/// through and other users can claim the keys.
#[tokio::test(flavor = "multi_thread")]
async fn upload_retries_with_identical_body() {
    let alice = server().register("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(server().port()).unwrap();
    proxy.add_rule(Rule::new("/keys/upload", 1, status(502)));
    proxy.add_rule(Rule::new("/keys/upload", 1, Action::Reset));
    let client = Client::login(options(&proxy.url(), &alice, dir.path()))
        .await
        .unwrap();
    let uploads: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|r| r.path.contains("/keys/upload"))
        .collect();
    assert_eq!(uploads.len(), 3);
    assert!(uploads.iter().all(|u| u.body == uploads[0].body));
    assert_eq!(uploads[2].upstream_status, Some(200));
    let me = client.identity();
    let peer = crate::common::Peer::new("bob");
    assert!(peer.claim(&me.user_id, &me.device_id).is_some());
}

/// 429 waits as long as `Retry-After` says, then succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_request_waits_as_told() {
    let alice = server().register("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(server().port()).unwrap();
    proxy.add_rule(Rule::new(
        "/login",
        1,
        Action::Status {
            code: 429,
            retry_after_secs: Some(1),
            retry_after_ms: Some(10),
        },
    ));
    let started = Instant::now();
    Client::login(options(&proxy.url(), &alice, dir.path()))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "did not honour Retry-After"
    );
    assert_eq!(proxy.count("/login"), 2);
}

/// A permanent error is not retried and surfaces with its errcode.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_a_clear_error() {
    let mut alice = server().register("alice").unwrap();
    alice.password = "wrong".into();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(server().port()).unwrap();
    let err = Client::login(options(&proxy.url(), &alice, dir.path()))
        .await
        .unwrap_err();
    match err {
        newt_client::ClientError::Http(e) => assert_eq!(e.errcode(), Some("M_FORBIDDEN")),
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(proxy.count("/login"), 1);
}
