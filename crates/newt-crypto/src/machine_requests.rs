//! The machine's requests: what to send, and applying what came back
//! (TD-02: every request is persisted before it is handed out).

use crate::account::ServerKeyCounts;
use crate::machine::{OlmMachine, ResponseOutcome, load};
use crate::machine_types::{Recipients, ResponseError};
use crate::megolm::outbound;
use crate::megolm::resend::{self, Rebuilt};
use crate::olm::claim;
use crate::requests::OutgoingRequest;
use crate::store::{PendingKind, StoreError, StoreTxn, redoable};
use crate::time::Timestamp;
use crate::{to_device, tracking};
use ruma::OwnedUserId;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

impl OlmMachine {
    /// What to send now, in order: the key upload, then every pending
    /// request. New `/keys/query` requests for outdated users (TRK-01) and
    /// claims for devices whose sessions broke (REC-02) are made here.
    pub fn outgoing_requests(
        &self,
        txn: &mut impl StoreTxn,
        now: Timestamp,
    ) -> Result<Vec<OutgoingRequest>, StoreError> {
        let mut seq = self.next_request_seq(txn)?;
        // Planned requests can be planned again.
        redoable(txn, |txn| tracking::plan_queries(txn, now, &mut seq))?;
        let mut wedged = Vec::new();
        for (user, device) in crate::wedged::list(txn)? {
            if let Some(record) = txn
                .load_devices(&user)?
                .into_iter()
                .find(|d| d.device_id == device)
                && record.local.wants_new_session
            {
                wedged.push(record);
            }
        }
        if !wedged.is_empty() {
            let wedged: Vec<_> = wedged.iter().collect();
            redoable(txn, |txn| {
                let needed = claim::needing_session(txn, &self.known_sessions, &wedged, now)?;
                claim::plan_claims(txn, needed.devices, &mut seq)
            })?;
        }
        let mut requests = Vec::new();
        if let Some(upload) = txn.load_account_state()?.and_then(|s| s.pending_upload) {
            requests.push(OutgoingRequest::upload(&upload));
        }
        // Bodies this machine queued are not read back from the store.
        let pending = txn.load_pending_requests_except(&|id| self.bodies.holds(id))?;
        let ids: BTreeSet<&str> = pending.iter().map(|r| r.request_id.as_str()).collect();
        self.bodies.retain(&ids);
        for request in pending {
            let held = match self.bodies.get(&request.request_id) {
                Some(body) => Some(body),
                // A room key's body is never stored: made here again.
                None if matches!(request.kind, PendingKind::RoomKey { .. }) => {
                    match resend::rebuild(txn, &self.sender(), &request)? {
                        Rebuilt::Body(body) => Some(body),
                        Rebuilt::Gone => continue,
                    }
                }
                // Left out, then dropped from a full cache: read it now.
                None if request.body.is_empty() => txn
                    .load_pending_request(&request.request_id)?
                    .map(|r| r.body),
                None => None,
            };
            requests.push(OutgoingRequest::pending(request, held));
        }
        Ok(requests)
    }

    /// Applies the 2xx response body of the request `request_id`.
    pub fn mark_request_as_sent(
        &self,
        txn: &mut impl StoreTxn,
        request_id: &str,
        body: &str,
        now: Timestamp,
    ) -> Result<ResponseOutcome, ResponseError> {
        // The keys are unpickled only for the responses that need them.
        let state = txn.load_account_state()?.ok_or(ResponseError::NoAccount)?;
        if state
            .pending_upload
            .as_ref()
            .is_some_and(|u| u.request_id == request_id)
        {
            let mut account = load(txn)?.ok_or(ResponseError::NoAccount)?;
            let response: KeysUploadResponse =
                serde_json::from_str(body).map_err(|e| ResponseError::Malformed(e.to_string()))?;
            account.upload_succeeded(&response.one_time_key_counts);
            txn.save_account(&account.to_record())?;
            return Ok(ResponseOutcome::default());
        }
        // Only its kind is needed, not the body.
        let pending = txn
            .load_pending_request_meta(request_id)?
            .ok_or_else(|| ResponseError::UnknownRequest(request_id.to_owned()))?;
        // Each response is read whole before anything changes. Device keys
        // stay text, parsed on the core that checks them.
        match &pending.kind {
            PendingKind::KeysQuery { users } => {
                let response: tracking::QueryResponse<'_> = parse_object(body)?;
                let no_upload_pending = state.pending_upload.is_none();
                self.query_answered(txn, request_id, users, &response, no_upload_pending, now)
            }
            PendingKind::KeysClaim { devices } => {
                let response: claim::ClaimResponse<'_> = parse_object(body)?;
                // Lost, the request is sent again; nothing was encrypted
                // with the new sessions yet, so they are claimed again.
                // The m.dummy below is durable.
                let claimed = redoable(txn, |txn| {
                    self.forget_request(txn, request_id)?;
                    claim::receive_claim(
                        txn,
                        self.outbound_account.get(),
                        devices,
                        &response,
                        &claim::Caches {
                            keys: &self.keys,
                            olm: &self.olm,
                            devices: &self.devices,
                            known: &self.known_sessions,
                        },
                        now,
                    )
                })?;
                if !claimed.replaced.is_empty() {
                    // REC-02: tell the peer about the new session.
                    let recipients = Recipients::Devices(claimed.replaced.clone());
                    self.encrypt_to_device(txn, "m.dummy", &json!({}), &recipients)?;
                }
                Ok(ResponseOutcome {
                    claim: Some(claimed),
                    ..ResponseOutcome::default()
                })
            }
            PendingKind::ToDevice {
                room_id: Some(room_id),
                ..
            }
            | PendingKind::RoomKey { room_id, .. } => {
                parse_object::<IgnoredAny>(body)?;
                self.forget_request(txn, request_id)?;
                outbound::request_answered(txn, room_id, request_id)?;
                Ok(ResponseOutcome::default())
            }
            PendingKind::ToDevice { .. } => {
                parse_object::<IgnoredAny>(body)?;
                self.forget_request(txn, request_id)?;
                Ok(ResponseOutcome::default())
            }
        }
    }

    /// A request is done: its row and its kept body go.
    fn forget_request(&self, txn: &mut impl StoreTxn, request_id: &str) -> Result<(), StoreError> {
        txn.delete_pending_request(request_id)?;
        self.bodies.remove(request_id);
        Ok(())
    }

    /// Applies a `/keys/query` response, then what waited for it.
    fn query_answered(
        &self,
        txn: &mut impl StoreTxn,
        request_id: &str,
        users: &BTreeMap<OwnedUserId, u64>,
        response: &tracking::QueryResponse<'_>,
        no_upload_pending: bool,
        now: Timestamp,
    ) -> Result<ResponseOutcome, ResponseError> {
        // Lost, the request is sent again and its answer applied again; what
        // the response releases (and an upload of our keys) is durable.
        let query = redoable(txn, |txn| {
            self.forget_request(txn, request_id)?;
            tracking::receive_query(
                txn,
                users,
                response,
                &self.own(),
                (&self.keys, &self.devices),
                now,
            )
        })?;
        // TRK-10: the server lost our device: publish its keys again.
        if query.own_device_missing && no_upload_pending {
            let mut account = load(txn)?.ok_or(ResponseError::NoAccount)?;
            account.state.device_keys_published = false;
            account.plan_upload(&ServerKeyCounts::default(), now);
            txn.save_account(&account.to_record())?;
        }
        let released = to_device::release(txn, &self.me())?;
        let room_events = crate::megolm::absorb_to_device(txn, &self.megolm_me(), &released)?;
        Ok(ResponseOutcome {
            query: Some(query),
            released,
            room_events,
            ..ResponseOutcome::default()
        })
    }

    /// The driver gave up on a request (a permanent HTTP error, or retries
    /// exhausted). Its effects are undone so the next round can retry; a
    /// key upload stays pending and is handed out again unchanged.
    pub fn mark_request_as_failed(
        &self,
        txn: &mut impl StoreTxn,
        request_id: &str,
    ) -> Result<(), StoreError> {
        let Some(pending) = txn.load_pending_request(request_id)? else {
            return Ok(());
        };
        self.forget_request(txn, request_id)?;
        match &pending.kind {
            PendingKind::KeysQuery { users } => tracking::query_failed(txn, users)?,
            PendingKind::RoomKey {
                room_id, devices, ..
            } => {
                let devices = devices.iter().map(|(u, d)| (&**u, &**d));
                outbound::request_failed(txn, room_id, request_id, devices)?;
            }
            // A room key queued before `RoomKey`: its body lists them.
            PendingKind::ToDevice {
                room_id: Some(room_id),
                ..
            } => {
                let devices = outbound::body_devices(&pending.body);
                let devices = devices.iter().map(|(u, d)| (&**u, &**d));
                outbound::request_failed(txn, room_id, request_id, devices)?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct KeysUploadResponse {
    #[serde(default)]
    one_time_key_counts: BTreeMap<String, u64>,
}

/// Reads a response body, which must be a JSON object: serde would also
/// read an array into a struct, as its fields in order.
fn parse_object<'a, T: Deserialize<'a>>(body: &'a str) -> Result<T, ResponseError> {
    if !body.trim_start().starts_with('{') {
        return Err(ResponseError::Malformed(
            "response is not a JSON object".into(),
        ));
    }
    serde_json::from_str(body).map_err(|e| ResponseError::Malformed(e.to_string()))
}
