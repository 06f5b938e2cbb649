//! The harness itself: a real Synapse starts, registers users, and the
//! proxy injects faults in front of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use newt_testkit::http::request;
use newt_testkit::{Action, Proxy, Rule, Synapse};

#[test]
fn synapse_starts_registers_and_logs_in() {
    let server = Synapse::shared().unwrap();
    let versions = request(server.port(), "GET", "/_matrix/client/versions", None).unwrap();
    assert_eq!(versions.status, 200);
    let user = server.register("harness").unwrap();
    assert!(user.user_id.starts_with("@harness-"));
    let (token, device) = server.login(&user).unwrap();
    let whoami = server
        .call(&token, "GET", "/_matrix/client/v3/account/whoami", None)
        .unwrap();
    assert_eq!(whoami["user_id"], user.user_id.as_str());
    assert_eq!(whoami["device_id"], device.as_str());
}

#[test]
fn proxy_injects_then_forwards() {
    let server = Synapse::shared().unwrap();
    let proxy = Proxy::start(server.port()).unwrap();
    proxy.add_rule(Rule::new(
        "/versions",
        1,
        Action::Status {
            code: 503,
            retry_after_secs: None,
            retry_after_ms: None,
        },
    ));
    proxy.add_rule(Rule::new(
        "/versions",
        1,
        Action::Status {
            code: 429,
            retry_after_secs: Some(2),
            retry_after_ms: Some(1500),
        },
    ));
    assert_eq!(
        request(proxy.port(), "GET", "/_matrix/client/versions", None)
            .unwrap()
            .status,
        503
    );
    let limited = request(proxy.port(), "GET", "/_matrix/client/versions", None).unwrap();
    assert_eq!(limited.status, 429);
    assert!(limited.body.contains("M_LIMIT_EXCEEDED"));
    assert_eq!(
        request(proxy.port(), "GET", "/_matrix/client/versions", None)
            .unwrap()
            .status,
        200
    );
    proxy.add_rule(Rule::new("/versions", 1, Action::DropResponse));
    assert!(request(proxy.port(), "GET", "/_matrix/client/versions", None).is_err());
    let log = proxy.log();
    assert_eq!(log.len(), 4);
    assert!(!log[0].forwarded && !log[1].forwarded && log[2].forwarded);
    assert!(log[3].forwarded, "dropped responses still reach the server");
    assert_eq!(proxy.count("/versions"), 4);
}
