//! The machine's room commands: what encrypted rooms need from the
//! facade (ENC-*, MEG-*).

use crate::machine::OlmMachine;
use crate::machine_types::{RoomUpdate, SyncOutcome};
use crate::megolm::{
    self, DecryptedRoomEvent, RoomDecryptError, RoomError, RoomEventOutcome, ShareOutcome,
    SharePolicy,
};
use crate::store::{StoreError, StoreTxn};
use crate::time::Timestamp;
use crate::tracking;
use ruma::{DeviceId, OwnedUserId, UserId};
use serde_json::Value;

impl OlmMachine {
    pub(crate) fn megolm_me(&self) -> megolm::decrypt::Me<'_> {
        megolm::decrypt::Me::new(self.user_id().as_str(), self.device_id().as_str())
    }

    /// Room keys and withheld notices among the to-device outcomes, then
    /// the rooms' state and encrypted timeline events.
    pub(crate) fn absorb_rooms(
        &self,
        txn: &mut impl StoreTxn,
        rooms: &[RoomUpdate],
        outcome: &mut SyncOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let opened = megolm::absorb_to_device(txn, &self.megolm_me(), &outcome.to_device)?;
        outcome.room_events.extend(opened);
        // One cache for every timeline event of this input, seeded with
        // the sessions earlier inputs left.
        let me = self.megolm_me();
        let (revision, sessions) = self.inbound.take(txn)?;
        *me.cache.sessions.borrow_mut() = sessions;
        for update in rooms {
            // One pass over each timeline event tells state from encrypted.
            let kinds: Vec<(bool, bool)> = update
                .timeline_events
                .iter()
                .map(megolm::event::kind)
                .collect();
            let state: Vec<&Value> = update
                .state_events
                .iter()
                .chain(
                    update
                        .timeline_events
                        .iter()
                        .zip(&kinds)
                        .filter(|(_, (state, _))| *state)
                        .map(|(e, _)| e),
                )
                .collect();
            let (room, effects) =
                megolm::room::apply_room_update(txn, &update.room_id, &state, update.limited)?;
            if room.encryption.is_some() {
                // Track everyone we may share keys with (TRK-01, ENC-11).
                let users: Vec<OwnedUserId> = if effects.encryption_enabled {
                    room.members.keys().cloned().collect()
                } else {
                    effects.arrived.clone()
                };
                tracking::track(txn, &users)?;
            }
            if effects.left {
                megolm::outbound::invalidate(txn, &update.room_id)?;
            }
            let encrypted: Vec<&Value> = update
                .timeline_events
                .iter()
                .zip(&kinds)
                .filter(|(_, (_, encrypted))| *encrypted)
                .map(|(e, _)| e)
                .collect();
            let room_id = &update.room_id;
            // Reserved once: growing a vector of large outcomes copies it.
            outcome.room_events.reserve(encrypted.len());
            megolm::batch::decrypt_timeline(
                txn,
                &me.cache,
                room_id,
                &encrypted,
                |txn, event, ahead| {
                    let event_id = event.event_id.unwrap_or_default().to_owned();
                    let result = megolm::decrypt::decrypt(txn, &me, room_id, event, now, ahead)?;
                    outcome.room_events.push(RoomEventOutcome {
                        room_id: room_id.clone(),
                        event_id,
                        result,
                        late: false,
                    });
                    Ok(())
                },
            )?;
        }
        let sessions = me.cache.sessions.take();
        self.inbound.keep(txn, revision, sessions)
    }

    /// Whether the room is encrypted (ENC-01); plaintext is refused then.
    pub fn is_room_encrypted(
        &self,
        txn: &mut impl StoreTxn,
        room_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(txn.load_room_encryption(room_id)?.is_some())
    }

    /// Users whose devices get the room's key (ENC-10). Track them and
    /// fetch their devices and sessions before [`Self::share_room_key`].
    pub fn room_key_recipients(
        &self,
        txn: &mut impl StoreTxn,
        room_id: &str,
    ) -> Result<Vec<OwnedUserId>, StoreError> {
        Ok(self
            .rooms
            .room(txn, room_id)?
            .map(|r| megolm::room::recipient_users(&r))
            .unwrap_or_default())
    }

    /// Applies room state from outside a sync (for example `/members`).
    pub fn receive_room_state(
        &self,
        txn: &mut impl StoreTxn,
        room_id: &str,
        state_events: &[Value],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut outcome = SyncOutcome::default();
        let update = RoomUpdate::new(room_id, state_events.to_vec(), Vec::new(), false);
        self.absorb_rooms(txn, &[update], &mut outcome, now)
    }

    /// Shares the room's outbound session with every device that should
    /// have it and does not, rotating first when required (ENC-04..13).
    /// Send the requests it queues before [`Self::encrypt_room_event`].
    pub fn share_room_key(
        &self,
        txn: &mut impl StoreTxn,
        room_id: &str,
        policy: SharePolicy,
        now: Timestamp,
    ) -> Result<ShareOutcome, RoomError> {
        let mut seq = self.next_request_seq(txn)?;
        megolm::share::share(txn, &self.sender(), room_id, policy, now, &mut seq)
    }

    /// Encrypts a room event (ENC-03, ENC-14). Fails with
    /// [`RoomError::KeyNotShared`] until the key was shared and sent.
    pub fn encrypt_room_event(
        &self,
        txn: &mut impl StoreTxn,
        room_id: &str,
        event_type: &str,
        content: &Value,
        now: Timestamp,
    ) -> Result<Value, RoomError> {
        megolm::outbound::encrypt_event(txn, &self.sender(), room_id, event_type, content, now)
    }

    /// Decrypts one room event (history, for instance). An event that may
    /// become readable is kept and reported again when its key arrives.
    pub fn decrypt_room_event(
        &self,
        txn: &mut impl StoreTxn,
        room_id: &str,
        event: &Value,
        now: Timestamp,
    ) -> Result<Result<DecryptedRoomEvent, RoomDecryptError>, StoreError> {
        let event = megolm::event::EncryptedEvent::of(event);
        megolm::decrypt::decrypt(txn, &self.megolm_me(), room_id, &event, now, None)
    }

    /// Every room key we hold, as `ExportedSessionData` (EXP-01).
    pub fn export_room_keys(&self, txn: &mut impl StoreTxn) -> Result<Vec<Value>, StoreError> {
        megolm::export::export(txn)
    }

    /// Imports exported room keys as unauthenticated (EXP-04), merging by
    /// MEG-07, and decrypts the events they open.
    pub fn import_room_keys(
        &self,
        txn: &mut impl StoreTxn,
        sessions: &[Value],
    ) -> Result<megolm::export::ImportOutcome, StoreError> {
        megolm::export::import(txn, &self.megolm_me(), sessions)
    }

    /// Why an event cannot be read, and what would fix it (`newt why`).
    pub fn explain_room_event(
        &self,
        txn: &mut impl StoreTxn,
        room_id: &str,
        event: &Value,
    ) -> Result<megolm::explain::Explanation, StoreError> {
        megolm::explain::explain(txn, &self.megolm_me(), room_id, event)
    }

    /// Marks a device verified (compared out of band) or not.
    pub fn set_device_verified(
        &self,
        txn: &mut impl StoreTxn,
        user: &UserId,
        device: &DeviceId,
        verified: bool,
    ) -> Result<bool, StoreError> {
        tracking::update_local(txn, user, device, |local| local.verified = verified)
    }
}
