//! Processing a sync's to-device events strictly in order (OLM-12), and
//! releasing events that waited for their sender's keys (OLM-11).

use crate::account::OwnAccount;
use crate::olm::decrypt::{self, ENCRYPTED_ONLY, Me, Opened, Outer};
use crate::olm::{DecryptedToDevice, SenderTrust, ToDeviceError};
use crate::requests::new_request_id;
use crate::store::AccountRecord;
use crate::store::{QueuedToDevice, StoreError, StoreTxn};
use crate::time::Timestamp;
use crate::tracking;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::Value;
use std::collections::BTreeSet;
use zeroize::Zeroizing;

/// What became of one to-device event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ToDeviceOutcome {
    /// Decrypted and bound to its sender.
    Decrypted(DecryptedToDevice),
    /// An unencrypted event of a type that may travel in the clear.
    Plain {
        /// The sender.
        sender: String,
        /// The event type.
        event_type: String,
        /// The content.
        content: Value,
    },
    /// Decrypted and checked, waiting for the sender's device list
    /// (OLM-11); it is released by a later `/keys/query` response.
    Queued {
        /// The sender.
        sender: OwnedUserId,
    },
    /// Discarded, with the rule it broke.
    Rejected {
        /// The sender as the event claimed.
        sender: String,
        /// The outer event type.
        event_type: String,
        /// Why.
        error: ToDeviceError,
    },
}

/// How the session's keys relate to the sender's listed devices (OLM-10).
enum Binding {
    Known(OwnedDeviceId),
    Mismatch,
    Unknown,
}

fn bind(
    txn: &mut impl StoreTxn,
    sender: &UserId,
    sender_key: &str,
    claimed_ed25519: &str,
) -> Result<Binding, StoreError> {
    let devices = txn.load_devices(sender)?;
    if let Some(device) = devices.iter().find(|d| d.curve25519 == sender_key) {
        return Ok(if device.ed25519 == claimed_ed25519 {
            Binding::Known(device.device_id.clone())
        } else {
            Binding::Mismatch
        });
    }
    // Another device's Ed25519 key with an unlisted Curve25519 key is a
    // forgery, not an unknown device.
    if devices.iter().any(|d| d.ed25519 == claimed_ed25519) {
        return Ok(Binding::Mismatch);
    }
    Ok(Binding::Unknown)
}

/// Whether the sender's device list is current, so an unknown device is
/// really unknown rather than not fetched yet.
fn list_is_current(txn: &mut impl StoreTxn, sender: &UserId) -> Result<bool, StoreError> {
    Ok(txn
        .load_tracked_user(sender)?
        .is_some_and(|u| u.tracked && !u.outdated && u.query_in_flight.is_none()))
}

/// The state one batch of to-device events runs against.
pub(crate) struct Batch<'a> {
    pub(crate) me: Me<'a>,
    pub(crate) now: Timestamp,
    pub(crate) queue_seq: u64,
    /// Senders with events waiting: later events of theirs wait too, so
    /// order is kept (OLM-12).
    pub(crate) waiting: BTreeSet<OwnedUserId>,
    /// The account as of the last accepted event that changed it, saved
    /// once by [`Self::finish`] rather than once per new session.
    unsaved: Option<AccountRecord>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(
        txn: &mut impl StoreTxn,
        me: Me<'a>,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        let queued = txn.load_queued_to_device()?;
        let queue_seq = queued.iter().map(|q| q.seq + 1).max().unwrap_or(0);
        let waiting = queued.into_iter().map(|q| q.sender).collect();
        Ok(Self {
            me,
            now,
            queue_seq,
            waiting,
            unsaved: None,
        })
    }

    /// Saves the account if accepted events changed it. Call once the
    /// batch's events are processed, in the same transaction.
    pub(crate) fn finish(self, txn: &mut impl StoreTxn) -> Result<(), StoreError> {
        match self.unsaved {
            Some(record) => txn.save_account(&record),
            None => Ok(()),
        }
    }

    /// Processes one event. Changes an accepted event made to the account
    /// are kept for [`Self::finish`]; a rejected event's are dropped.
    pub(crate) fn process(
        &mut self,
        txn: &mut impl StoreTxn,
        account: &mut OwnAccount,
        event: &Value,
    ) -> Result<Option<ToDeviceOutcome>, StoreError> {
        let sender = event
            .get("sender")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let event_type = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let rejected = |error| {
            Some(ToDeviceOutcome::Rejected {
                sender: sender.clone(),
                event_type: event_type.clone(),
                error,
            })
        };
        let Some(content) = event
            .get("content")
            .filter(|c| c.as_object().is_some_and(|o| !o.is_empty()))
        else {
            // OLM-13: redacted (empty) content has nothing to read.
            return Ok(None);
        };
        if event_type != crate::olm::encrypt::ENCRYPTED_EVENT_TYPE {
            if ENCRYPTED_ONLY.contains(&event_type.as_str()) {
                return Ok(rejected(ToDeviceError::MustBeEncrypted(event_type.clone())));
            }
            return Ok(Some(ToDeviceOutcome::Plain {
                sender,
                event_type,
                content: content.clone(),
            }));
        }
        let outer = Outer {
            sender: &sender,
            content,
        };
        let opened = match decrypt::open(txn, &mut account.inner, &self.me, &outer, self.now)? {
            Ok(opened) => opened,
            Err(error) => {
                if matches!(error, ToDeviceError::NoSession) {
                    self.unwedge(txn, &sender, content)?;
                }
                return Ok(rejected(error));
            }
        };
        match self.accept(txn, &opened)? {
            Ok(outcome) => {
                txn.save_olm_session(opened.session.to_record()?)?;
                if opened.created {
                    self.unsaved = Some(account.to_record());
                }
                Ok(Some(outcome))
            }
            Err(error) => {
                if opened.created {
                    // OLM-07: the one-time key is not consumed by a rejected
                    // message; go back to the last accepted account.
                    match self.unsaved.take() {
                        Some(record) => {
                            *account = OwnAccount::from_record(record);
                            // Still to be saved.
                            self.unsaved = Some(account.to_record());
                        }
                        None => {
                            if let Some(record) = txn.load_account()? {
                                *account = OwnAccount::from_record(record);
                            }
                        }
                    }
                }
                Ok(rejected(error))
            }
        }
    }

    /// OLM-09 and OLM-10 for an opened event; queues it when the sender's
    /// device list is not known yet (OLM-11).
    fn accept(
        &mut self,
        txn: &mut impl StoreTxn,
        opened: &Opened,
    ) -> Result<Result<ToDeviceOutcome, ToDeviceError>, StoreError> {
        if !opened.utf8 {
            return Ok(Err(ToDeviceError::BadPlaintext("not UTF-8".into())));
        }
        let checked = match decrypt::check_plaintext(&opened.origin(), &opened.plaintext, &self.me)
        {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let binding = bind(
            txn,
            &opened.sender,
            &opened.sender_key,
            &checked.claimed_ed25519,
        )?;
        let must_wait = self.waiting.contains(&opened.sender);
        let decrypted = |device: Option<OwnedDeviceId>, trust| DecryptedToDevice {
            sender: opened.sender.clone(),
            sender_device: device,
            sender_curve25519: opened.sender_key.clone(),
            sender_ed25519: checked.claimed_ed25519.clone(),
            event_type: checked.event_type.clone(),
            content: checked.content.clone(),
            trust,
        };
        match binding {
            Binding::Mismatch => Ok(Err(ToDeviceError::SenderKeyMismatch)),
            Binding::Known(device) if !must_wait => Ok(Ok(ToDeviceOutcome::Decrypted(decrypted(
                Some(device),
                SenderTrust::KnownDevice,
            )))),
            Binding::Unknown if !must_wait && list_is_current(txn, &opened.sender)? => Ok(Ok(
                ToDeviceOutcome::Decrypted(decrypted(None, SenderTrust::UnknownDevice)),
            )),
            _ => {
                tracking::track(txn, std::slice::from_ref(&opened.sender))?;
                tracking::apply_device_list_changes(
                    txn,
                    std::slice::from_ref(&opened.sender),
                    &[],
                )?;
                txn.save_queued_to_device(&QueuedToDevice {
                    id: new_request_id(),
                    seq: self.queue_seq,
                    sender: opened.sender.clone(),
                    sender_key: opened.sender_key.clone(),
                    plaintext: Zeroizing::new(opened.plaintext.clone()),
                    received_at_ms: self.now.0,
                })?;
                self.queue_seq += 1;
                self.waiting.insert(opened.sender.clone());
                Ok(Ok(ToDeviceOutcome::Queued {
                    sender: opened.sender.clone(),
                }))
            }
        }
    }

    /// REC-01, REC-03: a message no session decrypts means our session with
    /// that device is broken; ask for a new one, at most once an hour.
    fn unwedge(
        &self,
        txn: &mut impl StoreTxn,
        sender: &str,
        content: &Value,
    ) -> Result<(), StoreError> {
        let (Ok(sender), Some(key)) = (
            <&UserId>::try_from(sender),
            content.get("sender_key").and_then(Value::as_str),
        ) else {
            return Ok(());
        };
        let Some(mut device) = txn
            .load_devices(sender)?
            .into_iter()
            .find(|d| d.curve25519 == key)
        else {
            // Unknown device: learn it first.
            tracking::track(txn, &[sender.to_owned()])?;
            return Ok(());
        };
        let recent = device
            .local
            .new_session_at_ms
            .is_some_and(|at| self.now.0 < at.saturating_add(Timestamp::HOUR_MS));
        if !device.local.wants_new_session && !recent {
            device.local.wants_new_session = true;
            crate::wedged::add(txn, (device.user_id.clone(), device.device_id.clone()))?;
            device.local.claim_retry_at_ms = None;
            txn.save_device(&device)?;
        }
        Ok(())
    }
}

/// Releases queued events whose senders' device lists are now current,
/// in arrival order (OLM-11, OLM-12). A sender whose list is still not
/// current keeps its events, and so do later events of that sender.
pub(crate) fn release(
    txn: &mut impl StoreTxn,
    me: &Me<'_>,
) -> Result<Vec<ToDeviceOutcome>, StoreError> {
    let mut out = Vec::new();
    let mut blocked: BTreeSet<OwnedUserId> = BTreeSet::new();
    for queued in txn.load_queued_to_device()? {
        if blocked.contains(&queued.sender) || !list_is_current(txn, &queued.sender)? {
            blocked.insert(queued.sender.clone());
            continue;
        }
        txn.delete_queued_to_device(&queued.id)?;
        let origin = decrypt::Origin {
            sender: &queued.sender,
            sender_key: &queued.sender_key,
        };
        let outcome = match decrypt::check_plaintext(&origin, &queued.plaintext, me) {
            Err(error) => ToDeviceOutcome::Rejected {
                sender: queued.sender.to_string(),
                event_type: String::new(),
                error,
            },
            Ok(checked) => {
                let (device, trust) = match bind(
                    txn,
                    &queued.sender,
                    &queued.sender_key,
                    &checked.claimed_ed25519,
                )? {
                    Binding::Known(device) => (Some(device), SenderTrust::KnownDevice),
                    Binding::Unknown => (None, SenderTrust::UnknownDevice),
                    Binding::Mismatch => {
                        out.push(ToDeviceOutcome::Rejected {
                            sender: queued.sender.to_string(),
                            event_type: checked.event_type,
                            error: ToDeviceError::SenderKeyMismatch,
                        });
                        continue;
                    }
                };
                ToDeviceOutcome::Decrypted(DecryptedToDevice {
                    sender: queued.sender.clone(),
                    sender_device: device,
                    sender_curve25519: queued.sender_key.clone(),
                    sender_ed25519: checked.claimed_ed25519,
                    event_type: checked.event_type,
                    content: checked.content,
                    trust,
                })
            }
        };
        out.push(outcome);
    }
    Ok(out)
}
