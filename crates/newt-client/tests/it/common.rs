//! Shared helpers: a server, users and logged-in clients.

use newt_client::retry::RetryPolicy;
use newt_client::{Client, LoginOptions};
use newt_testkit::Synapse;
use newt_testkit::synapse::RegisteredUser;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

pub fn server() -> &'static Synapse {
    Synapse::shared().unwrap_or_else(|e| panic!("Synapse did not start: {e}"))
}

/// A fast policy so failing tests fail quickly.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        max_server_wait: Duration::from_secs(10),
    }
}

pub fn options(homeserver: &str, user: &RegisteredUser, data_dir: &Path) -> LoginOptions {
    LoginOptions {
        data_dir: data_dir.to_path_buf(),
        homeserver: homeserver.to_owned(),
        user: user.localpart.clone(),
        password: user.password.clone().into(),
        device_name: Some("newt test".into()),
        retry: fast_retry(),
    }
}

pub async fn login(user: &RegisteredUser, data_dir: &Path) -> Client {
    Client::login(options(&server().url(), user, data_dir))
        .await
        .unwrap()
}

/// A second, independent client (raw HTTP, no newt code) acting as a peer.
pub struct Peer {
    pub token: String,
}

impl Peer {
    pub fn new(name: &str) -> Self {
        let user = server().register(name).unwrap();
        let (token, _) = server().login(&user).unwrap();
        Self { token }
    }

    pub fn query(&self, user_id: &str) -> Value {
        let body = json!({"device_keys": {user_id: []}});
        server()
            .call(
                &self.token,
                "POST",
                "/_matrix/client/v3/keys/query",
                Some(&body),
            )
            .unwrap()
    }

    /// Claims one key of `user_id`/`device_id`; returns `(key_id, key object)`.
    pub fn claim(&self, user_id: &str, device_id: &str) -> Option<(String, Value)> {
        let body = json!({"one_time_keys": {user_id: {device_id: "signed_curve25519"}}});
        let resp = server()
            .call(
                &self.token,
                "POST",
                "/_matrix/client/v3/keys/claim",
                Some(&body),
            )
            .unwrap();
        let keys = resp["one_time_keys"][user_id][device_id]
            .as_object()?
            .clone();
        keys.into_iter().next()
    }
}
