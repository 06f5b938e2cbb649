//! Encrypted to-device messaging on top of the machine: the full
//! track → query → claim → encrypt → send flow.

use crate::client::{Client, now};
use crate::error::ClientError;
use newt_crypto::store::StoreTxn;
use newt_crypto::{DeviceInfo, EncryptOutcome, Recipients, ToDeviceOutcome};
use ruma::{OwnedUserId, UserId};
use serde_json::Value;

impl Client {
    /// Follows these users' devices and fetches their device lists now.
    pub async fn track_users(&mut self, users: &[OwnedUserId]) -> Result<(), ClientError> {
        let mut txn = self.store.begin()?;
        self.machine.update_tracked_users(&mut txn, users)?;
        txn.commit()?;
        self.process_outgoing().await?;
        Ok(())
    }

    /// A user's known devices, as last fetched and checked.
    pub fn devices(&mut self, user: &UserId) -> Result<Vec<DeviceInfo>, ClientError> {
        let mut txn = self.store.begin()?;
        Ok(self.machine.devices(&mut txn, user)?)
    }

    /// Blocks or unblocks a device; returns whether it was known.
    pub fn set_blocked(
        &mut self,
        user: &UserId,
        device: &ruma::DeviceId,
        blocked: bool,
    ) -> Result<bool, ClientError> {
        let mut txn = self.store.begin()?;
        let known = self.machine.set_blocked(&mut txn, user, device, blocked)?;
        txn.commit()?;
        Ok(known)
    }

    /// Marks a device verified (its key compared out of band); returns
    /// whether it was known.
    pub fn set_verified(
        &mut self,
        user: &UserId,
        device: &ruma::DeviceId,
        verified: bool,
    ) -> Result<bool, ClientError> {
        let mut txn = self.store.begin()?;
        let known = self
            .machine
            .set_device_verified(&mut txn, user, device, verified)?;
        txn.commit()?;
        Ok(known)
    }

    /// Olm-encrypts `content` as `event_type` for the recipients and sends
    /// it: device lists are fetched, missing sessions claimed, then each
    /// device gets its own ciphertext. Devices without a session are in
    /// the outcome's `missing_sessions`; they never block the others.
    pub async fn send_to_device_encrypted(
        &mut self,
        event_type: &str,
        content: &Value,
        recipients: Recipients,
    ) -> Result<EncryptOutcome, ClientError> {
        let users: Vec<OwnedUserId> = match &recipients {
            Recipients::Users(users) => users.clone(),
            Recipients::Devices(devices) => devices.iter().map(|(u, _)| u.clone()).collect(),
        };
        {
            let mut txn = self.store.begin()?;
            self.machine.update_tracked_users(&mut txn, &users)?;
            txn.commit()?;
        }
        self.process_outgoing().await?;
        {
            let mut txn = self.store.begin()?;
            self.machine
                .get_missing_sessions(&mut txn, &recipients, now())?;
            txn.commit()?;
        }
        self.process_outgoing().await?;
        let outcome = {
            let mut txn = self.store.begin()?;
            let outcome =
                self.machine
                    .encrypt_to_device(&mut txn, event_type, content, &recipients)?;
            txn.commit()?;
            outcome
        };
        self.process_outgoing().await?;
        Ok(outcome)
    }

    /// To-device events received since the last call, in order.
    pub fn take_to_device(&mut self) -> Vec<ToDeviceOutcome> {
        std::mem::take(&mut self.to_device)
    }

    /// A stored value (the sync token, for instance), for diagnostics.
    pub fn stored_value(&mut self, key: &str) -> Result<Option<String>, ClientError> {
        let mut txn = self.store.begin()?;
        Ok(txn.get_value(key)?)
    }
}

impl Client {
    /// A user's devices after a fresh `/keys/query`.
    pub async fn fresh_devices(&mut self, user: &UserId) -> Result<Vec<DeviceInfo>, ClientError> {
        {
            let mut txn = self.store.begin()?;
            let users = [user.to_owned()];
            self.machine.update_tracked_users(&mut txn, &users)?;
            let changes = {
                let mut c = newt_crypto::SyncChanges::default();
                c.device_lists_changed = users.to_vec();
                c
            };
            self.machine
                .receive_sync_changes(&mut txn, &changes, crate::client::now())?;
            txn.commit()?;
        }
        self.process_outgoing().await?;
        self.devices(user)
    }

    /// Every room key this device holds, as `ExportedSessionData`.
    pub fn export_room_keys(&mut self) -> Result<Vec<Value>, ClientError> {
        let mut txn = self.store.begin()?;
        Ok(self.machine.export_room_keys(&mut txn)?)
    }

    /// Imports a batch of exported room keys in one transaction.
    pub fn import_room_keys(
        &mut self,
        sessions: &[Value],
    ) -> Result<newt_crypto::ImportOutcome, ClientError> {
        let mut txn = self.store.begin()?;
        let outcome = self.machine.import_room_keys(&mut txn, sessions)?;
        txn.commit()?;
        self.messages
            .extend(crate::messages::collect(&[], &outcome.room_events));
        Ok(outcome)
    }

    /// Logs this device out on the server. The local profile is kept
    /// aside, not deleted, so its keys can still be exported.
    pub async fn logout(self) -> Result<std::path::PathBuf, ClientError> {
        self.http
            .send(
                reqwest::Method::POST,
                "/_matrix/client/v3/logout",
                Some("{}"),
            )
            .await?;
        let profile = self.profile().clone();
        drop(self);
        profile.retire("logged-out")
    }
}
