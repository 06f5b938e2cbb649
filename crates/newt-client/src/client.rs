//! The client: a logged-in device with its store, machine and transport.

use crate::error::ClientError;
use crate::http::HttpClient;
use crate::profile::{Profile, ProfileInfo};
use crate::retry::RetryPolicy;
use newt_crypto::store::{Store, StoreTxn};
use newt_crypto::{OlmMachine, SyncChanges, Timestamp};
use newt_sqlite::SqliteStore;
use reqwest::Method;
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

const ACCESS_TOKEN: &str = "access_token";
const SYNC_TOKEN: &str = "sync_token";

/// The current time for the machine.
pub(crate) fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp(ms)
}

/// How to log in.
#[derive(Clone)]
pub struct LoginOptions {
    /// Where profiles live.
    pub data_dir: PathBuf,
    /// Homeserver base URL.
    pub homeserver: String,
    /// Localpart or full user ID.
    pub user: String,
    /// The password.
    pub password: Zeroizing<String>,
    /// Display name for a new device.
    pub device_name: Option<String>,
    /// Retry policy for every request.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for LoginOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginOptions")
            .field("data_dir", &self.data_dir)
            .field("homeserver", &self.homeserver)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Who this device is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// Homeserver base URL.
    pub homeserver: String,
    /// Full user ID.
    pub user_id: String,
    /// Device ID.
    pub device_id: String,
    /// Ed25519 fingerprint key (unpadded base64).
    pub ed25519: String,
    /// Curve25519 identity key (unpadded base64).
    pub curve25519: String,
}

/// What one sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncSummary {
    /// The token now stored.
    pub next_batch: String,
    /// Requests sent afterwards.
    pub requests_sent: usize,
}

/// A logged-in device.
pub struct Client {
    pub(crate) http: HttpClient,
    pub(crate) store: SqliteStore,
    pub(crate) machine: OlmMachine,
    profile: Profile,
    homeserver: String,
    /// To-device outcomes not yet taken by the application.
    pub(crate) to_device: Vec<newt_crypto::ToDeviceOutcome>,
    /// Room messages not yet taken by the application.
    pub(crate) messages: Vec<crate::messages::RoomMessage>,
    /// Who gets room keys.
    pub(crate) share_policy: newt_crypto::SharePolicy,
    /// The last key-share run.
    pub(crate) last_share: Option<newt_crypto::ShareOutcome>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user_id", &self.machine.user_id())
            .field("device_id", &self.machine.device_id())
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct LoginResponse {
    user_id: OwnedUserId,
    device_id: OwnedDeviceId,
    access_token: String,
}

impl Client {
    /// Logs in with a password, reusing this profile's device ID if one
    /// exists, and publishes the device's keys.
    pub async fn login(options: LoginOptions) -> Result<Self, ClientError> {
        let mut http = HttpClient::new(&options.homeserver, options.retry.clone())?;
        let previous = Profile::find(&options.data_dir, &options.user);
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": options.user},
            "password": options.password.as_str(),
        });
        if let Some((_, info)) = &previous {
            body["device_id"] = json!(info.device_id);
        }
        if let Some(name) = &options.device_name {
            body["initial_device_display_name"] = json!(name);
        }
        let login: LoginResponse = http
            .send_json(
                Method::POST,
                "/_matrix/client/v3/login",
                Some(&body.to_string()),
            )
            .await?;
        let profile = Profile::for_user(&options.data_dir, login.user_id.as_str());
        if let Ok(info) = profile.info()
            && info.device_id != login.device_id.as_str()
        {
            // DEV-07: a new device never inherits another device's keys.
            profile.retire(&format!("replaced-{}", info.device_id))?;
        }
        let info = ProfileInfo {
            homeserver: options.homeserver.clone(),
            user_id: login.user_id.to_string(),
            device_id: login.device_id.to_string(),
        };
        let mut store = profile.open_store()?;
        let machine = {
            let mut txn = store.begin()?;
            txn.save_secret(ACCESS_TOKEN, login.access_token.as_bytes())?;
            let machine = OlmMachine::open(&mut txn, &login.user_id, &login.device_id, now())?;
            txn.commit()?;
            machine
        };
        profile.save_info(&options.data_dir, &info)?;
        http.set_token(Some(login.access_token));
        let mut client = Self {
            http,
            store,
            machine,
            profile,
            homeserver: options.homeserver,
            to_device: Vec::new(),
            messages: Vec::new(),
            share_policy: newt_crypto::SharePolicy::default(),
            last_share: None,
        };
        client.process_outgoing().await?;
        Ok(client)
    }

    /// Reopens the current profile under `data_dir`.
    pub async fn restore(data_dir: &Path, retry: RetryPolicy) -> Result<Self, ClientError> {
        Self::open_profile(Profile::current(data_dir)?, retry, None)
    }

    /// Reopens `profile`, optionally through another homeserver URL (a
    /// proxy in tests).
    pub fn open_profile(
        profile: Profile,
        retry: RetryPolicy,
        homeserver: Option<&str>,
    ) -> Result<Self, ClientError> {
        let info = profile.info()?;
        let homeserver = homeserver.unwrap_or(&info.homeserver).to_owned();
        let mut http = HttpClient::new(&homeserver, retry)?;
        let mut store = profile.open_store()?;
        let user_id = OwnedUserId::try_from(info.user_id.as_str())
            .map_err(|e| ClientError::Protocol(format!("profile user ID: {e}")))?;
        let device_id = OwnedDeviceId::from(info.device_id.as_str());
        let (machine, token) = {
            let mut txn = store.begin()?;
            let token = txn
                .load_secret(ACCESS_TOKEN)?
                .ok_or_else(|| ClientError::NotLoggedIn(profile.dir().display().to_string()))?;
            let token = String::from_utf8(token.to_vec())
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let machine = OlmMachine::open(&mut txn, &user_id, &device_id, now())?;
            txn.commit()?;
            (machine, token)
        };
        http.set_token(Some(token));
        Ok(Self {
            http,
            store,
            machine,
            profile,
            homeserver,
            to_device: Vec::new(),
            messages: Vec::new(),
            share_policy: newt_crypto::SharePolicy::default(),
            last_share: None,
        })
    }

    /// This device's identity.
    pub fn identity(&self) -> Identity {
        Identity {
            homeserver: self.homeserver.clone(),
            user_id: self.machine.user_id().to_string(),
            device_id: self.machine.device_id().to_string(),
            ed25519: self.machine.ed25519_key().to_owned(),
            curve25519: self.machine.curve25519_key().to_owned(),
        }
    }

    /// The profile this client runs from.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The transport, for requests newt does not wrap yet.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// One `/sync`: its E2EE changes and the new token are committed in one
    /// transaction (TD-04), then any requests it caused are sent.
    pub async fn sync_once(&mut self, timeout: Duration) -> Result<SyncSummary, ClientError> {
        let since = {
            let mut txn = self.store.transaction()?;
            txn.get_value(SYNC_TOKEN)?
        };
        let mut path = format!("/_matrix/client/v3/sync?timeout={}", timeout.as_millis());
        if let Some(since) = &since {
            path.push_str("&since=");
            path.push_str(&encode_query(since));
        }
        let sync: Value = self.http.send_json(Method::GET, &path, None).await?;
        let next_batch = sync
            .get("next_batch")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Protocol("sync response without next_batch".into()))?
            .to_owned();
        let mut changes = SyncChanges::from_sync_json(&sync);
        changes.initial = since.is_none();
        {
            let mut txn = self.store.transaction()?;
            let outcome = self
                .machine
                .receive_sync_changes(&mut txn, &changes, now())?;
            // The room list and token need not reach the disk before the
            // next request: commits become durable in order, so a power
            // loss takes them only with what came after, and the server
            // sends that part of the sync again. To-device effects (TD-04)
            // are written with deferral off and make this commit durable.
            newt_crypto::store::redoable(&mut txn, |txn| {
                crate::rooms::update_room_list(txn, &sync)?;
                txn.set_value(SYNC_TOKEN, &next_batch)
            })?;
            txn.commit()?;
            self.to_device.extend(outcome.to_device);
            let timelines = crate::rooms::timelines(&sync);
            self.messages
                .extend(crate::messages::collect(&timelines, &outcome.room_events));
        }
        // The sync itself is committed; requests it caused (queries, claims)
        // that cannot get through now are retried by the next round.
        let requests_sent = match self.process_outgoing().await {
            Ok(sent) => sent,
            Err(ClientError::Http(error)) => {
                tracing::warn!(%error, "requests after sync failed; retrying next round");
                0
            }
            Err(other) => return Err(other),
        };
        Ok(SyncSummary {
            next_batch,
            requests_sent,
        })
    }

    /// Syncs until `stop` turns true; a sync in progress finishes and
    /// commits first.
    pub async fn sync_loop(
        &mut self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ClientError> {
        while !*stop.borrow() {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                result = self.sync_once(Duration::from_secs(30)) => { result?; }
            }
        }
        Ok(())
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode_query(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
