//! The device account: identity keys, signed device keys, one-time and
//! fallback keys, and the crash-safe upload that publishes them
//! (DEV-01..09, OTK-01..08).

use crate::signing::sign_json;
use crate::store::{AccountRecord, AccountState, PendingUpload};
use crate::time::Timestamp;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use vodozemac::olm::{Account, IdentityKeys};

/// Olm v1 and Megolm v1, advertised in `algorithms` (DEV-03).
pub const OLM_ALGORITHM: &str = "m.olm.v1.curve25519-aes-sha2";
/// The Megolm v1 algorithm name.
pub const MEGOLM_ALGORITHM: &str = "m.megolm.v1.aes-sha2";
/// The one-time key algorithm Olm v1 uses (OTK-01).
pub const SIGNED_CURVE25519: &str = "signed_curve25519";

/// One-time keys kept on the server: half of what vodozemac holds.
const OTK_TARGET: u64 = 25;

/// An account kept only for its identity keys, which never change: its
/// one-time keys go stale, so it is never saved or used to decrypt.
pub(crate) struct IdentityOnly(Box<Account>);

impl IdentityOnly {
    pub(crate) fn new(account: Account) -> Self {
        Self(Box::new(account))
    }

    /// For making outbound sessions (they use the identity keys only).
    pub(crate) fn get(&self) -> &Account {
        &self.0
    }
}

impl std::fmt::Debug for IdentityOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityOnly").finish_non_exhaustive()
    }
}

/// A loaded account with its bookkeeping. Lives for one input.
pub(crate) struct OwnAccount {
    pub(crate) inner: Account,
    pub(crate) state: AccountState,
}

impl OwnAccount {
    pub(crate) fn from_record(record: AccountRecord) -> Self {
        Self {
            inner: Account::from_pickle(record.pickle),
            state: record.state,
        }
    }

    pub(crate) fn to_record(&self) -> AccountRecord {
        AccountRecord::new(&self.inner, self.state.clone())
    }

    pub(crate) fn identity_keys(&self) -> IdentityKeys {
        self.inner.identity_keys()
    }

    fn ed25519_key_id(&self) -> String {
        format!("ed25519:{}", self.state.device_id)
    }

    /// Signs `object` with the device key (SIG-01).
    fn sign(&self, object: &mut Map<String, Value>) {
        let user = self.state.user_id.to_string();
        // Objects built here hold only strings and booleans, which always
        // have a canonical form.
        let _ = sign_json(object, &user, &self.ed25519_key_id(), |m| {
            self.inner.sign(m)
        });
    }

    /// The signed `device_keys` object (DEV-03, DEV-04, DEV-05).
    pub(crate) fn device_keys(&self) -> Value {
        let keys = self.identity_keys();
        let device = self.state.device_id.as_str();
        let mut object = Map::new();
        object.insert("user_id".into(), json!(self.state.user_id));
        object.insert("device_id".into(), json!(device));
        object.insert(
            "algorithms".into(),
            json!([OLM_ALGORITHM, MEGOLM_ALGORITHM]),
        );
        object.insert(
            "keys".into(),
            json!({
                format!("curve25519:{device}"): keys.curve25519.to_base64(),
                format!("ed25519:{device}"): keys.ed25519.to_base64(),
            }),
        );
        self.sign(&mut object);
        Value::Object(object)
    }

    /// A signed `KeyObject` (OTK-01); fallback keys carry `fallback: true`
    /// inside the signed part (OTK-04).
    fn key_object(&self, key: vodozemac::Curve25519PublicKey, fallback: bool) -> Value {
        let mut object = Map::new();
        object.insert("key".into(), json!(key.to_base64()));
        if fallback {
            object.insert("fallback".into(), json!(true));
        }
        self.sign(&mut object);
        Value::Object(object)
    }

    /// Target count of one-time keys on the server: half of what the
    /// account can hold (OTK-02).
    pub(crate) fn otk_target(&self) -> u64 {
        (self.inner.max_number_of_one_time_keys() / 2) as u64
    }

    /// Whether [`Self::plan_upload`] would change anything, from the
    /// public state alone: most syncs need no upload, and then the keys
    /// are never unpickled.
    pub(crate) fn upload_due(
        state: &AccountState,
        server: &ServerKeyCounts,
        now: Timestamp,
    ) -> bool {
        if state
            .forget_previous_fallback_at_ms
            .is_some_and(|at| now.0 >= at)
        {
            return true;
        }
        if state.pending_upload.is_some() {
            return false;
        }
        let count = server.one_time_keys.or(state.server_otk_count).unwrap_or(0);
        OTK_TARGET.saturating_sub(count) > 0
            || state.fallback_created_at_ms.is_none()
            || server.fallback_used(SIGNED_CURVE25519)
            || !state.device_keys_published
    }

    /// Applies what the server says about our keys, generating what is
    /// missing and persisting the upload body before anyone sends it.
    /// Returns whether the account changed.
    pub(crate) fn plan_upload(&mut self, server: &ServerKeyCounts, now: Timestamp) -> bool {
        let mut changed = self.forget_old_fallback(now);
        // DEV-09: one upload in flight; counts seen meanwhile are stale.
        if self.state.pending_upload.is_some() {
            return changed;
        }
        if let Some(count) = server.one_time_keys {
            self.state.server_otk_count = Some(count);
        }
        let missing_otks = self
            .otk_target()
            .saturating_sub(self.state.server_otk_count.unwrap_or(0));
        let needs_fallback =
            self.state.fallback_created_at_ms.is_none() || server.fallback_used(SIGNED_CURVE25519);
        let needs_device_keys = !self.state.device_keys_published;
        if missing_otks == 0 && !needs_fallback && !needs_device_keys {
            return changed;
        }
        if missing_otks > 0 {
            self.inner.generate_one_time_keys(missing_otks as usize);
        }
        if needs_fallback {
            let had_previous = self.state.fallback_created_at_ms.is_some();
            self.inner.generate_fallback_key();
            self.state.fallback_created_at_ms = Some(now.0);
            // OTK-06/OTK-07: the old fallback key may still start sessions
            // from messages in flight; keep it for an hour.
            if had_previous {
                self.state.forget_previous_fallback_at_ms = Some(now.plus_ms(Timestamp::HOUR_MS).0);
            }
        }
        self.state.pending_upload = Some(PendingUpload {
            request_id: crate::requests::new_request_id(),
            body: self.upload_body(needs_device_keys).to_string(),
        });
        changed = true;
        changed
    }

    fn forget_old_fallback(&mut self, now: Timestamp) -> bool {
        match self.state.forget_previous_fallback_at_ms {
            Some(at) if now.0 >= at => {
                self.inner.forget_fallback_key();
                self.state.forget_previous_fallback_at_ms = None;
                true
            }
            _ => false,
        }
    }

    /// The `/keys/upload` body: every unpublished key (DEV-08).
    fn upload_body(&self, with_device_keys: bool) -> Value {
        let mut body = Map::new();
        if with_device_keys {
            body.insert("device_keys".into(), self.device_keys());
        }
        let otks: BTreeMap<String, Value> = self
            .inner
            .one_time_keys()
            .into_iter()
            .map(|(id, key)| {
                (
                    format!("{SIGNED_CURVE25519}:{}", id.to_base64()),
                    self.key_object(key, false),
                )
            })
            .collect();
        if !otks.is_empty() {
            body.insert("one_time_keys".into(), json!(otks));
        }
        let fallback: BTreeMap<String, Value> = self
            .inner
            .fallback_key()
            .into_iter()
            .map(|(id, key)| {
                (
                    format!("{SIGNED_CURVE25519}:{}", id.to_base64()),
                    self.key_object(key, true),
                )
            })
            .collect();
        if !fallback.is_empty() {
            body.insert("fallback_keys".into(), json!(fallback));
        }
        Value::Object(body)
    }

    /// A 2xx for the pending upload: the keys are published (DEV-08).
    pub(crate) fn upload_succeeded(&mut self, one_time_key_counts: &BTreeMap<String, u64>) {
        self.inner.mark_keys_as_published();
        self.state.device_keys_published = true;
        self.state.pending_upload = None;
        // OTK-02: an absent algorithm means zero.
        self.state.server_otk_count = Some(
            one_time_key_counts
                .get(SIGNED_CURVE25519)
                .copied()
                .unwrap_or(0),
        );
    }
}

/// What a sync (or upload response) says about our keys on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerKeyCounts {
    /// `device_one_time_keys_count.signed_curve25519`; `None` when the
    /// response said nothing about counts at all.
    pub one_time_keys: Option<u64>,
    /// `device_unused_fallback_key_types`; `None` when absent, which means
    /// the server does not support fallback keys.
    pub unused_fallback_key_types: Option<Vec<String>>,
}

impl ServerKeyCounts {
    /// Reads the sync fields, treating an absent count as zero (OTK-02).
    pub fn from_sync(
        one_time_key_counts: Option<&BTreeMap<String, u64>>,
        unused_fallback_key_types: Option<Vec<String>>,
    ) -> Self {
        Self {
            one_time_keys: one_time_key_counts
                .map(|counts| counts.get(SIGNED_CURVE25519).copied().unwrap_or(0)),
            unused_fallback_key_types,
        }
    }

    /// OTK-05: a fallback key type missing from the unused list was used.
    fn fallback_used(&self, algorithm: &str) -> bool {
        self.unused_fallback_key_types
            .as_ref()
            .is_some_and(|types| !types.iter().any(|t| t == algorithm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `upload_due` answers exactly what `plan_upload` would do, for every
    /// combination of state and server counts.
    #[test]
    fn upload_due_agrees_with_plan_upload() {
        let user: ruma::OwnedUserId = "@a:example.org".try_into().unwrap();
        let base = OwnAccount {
            inner: Account::new(),
            state: AccountState::new(&user, "DEV".into()),
        };
        assert_eq!(base.otk_target(), OTK_TARGET);
        let mut cases = 0;
        for pending in [false, true] {
            for fallback in [None, Some(1)] {
                for forget in [None, Some(5), Some(500)] {
                    for published in [false, true] {
                        for stored in [None, Some(0), Some(25)] {
                            for count in [None, Some(0), Some(10), Some(25), Some(50)] {
                                for unused in
                                    [None, Some(vec![]), Some(vec![SIGNED_CURVE25519.to_owned()])]
                                {
                                    let mut account = OwnAccount::from_record(base.to_record());
                                    account.state.pending_upload = pending.then(|| PendingUpload {
                                        request_id: "r".into(),
                                        body: "{}".into(),
                                    });
                                    account.state.fallback_created_at_ms = fallback;
                                    account.state.forget_previous_fallback_at_ms = forget;
                                    account.state.device_keys_published = published;
                                    account.state.server_otk_count = stored;
                                    let server = ServerKeyCounts {
                                        one_time_keys: count,
                                        unused_fallback_key_types: unused,
                                    };
                                    let now = Timestamp(100);
                                    let due = OwnAccount::upload_due(&account.state, &server, now);
                                    assert_eq!(
                                        due,
                                        account.plan_upload(&server, now),
                                        "{server:?}"
                                    );
                                    cases += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 2 * 2 * 3 * 2 * 3 * 5 * 3);
    }
}
