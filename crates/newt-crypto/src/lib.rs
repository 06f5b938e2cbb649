//! # newt-crypto
//!
//! A sans-I/O, synchronous Matrix end-to-end encryption state machine built
//! on `vodozemac`. It never touches the network, the disk or the clock:
//! the caller passes in store transactions, the current time and HTTP
//! responses, and sends the requests it hands out.
//!
//! ```
//! use newt_crypto::{OlmMachine, SyncChanges, Timestamp};
//! use newt_crypto::store::{MemoryStore, Store, StoreTxn};
//!
//! let mut store = MemoryStore::new();
//! let user = ruma::UserId::parse("@alice:example.org").unwrap();
//! let device: ruma::OwnedDeviceId = "ALICEDEV".into();
//! let now = Timestamp(1_700_000_000_000);
//!
//! // One input, one transaction.
//! let mut txn = store.transaction().unwrap();
//! let machine = OlmMachine::open(&mut txn, &user, &device, now).unwrap();
//! txn.commit().unwrap();
//!
//! // Pull: the first upload was persisted before it is handed out.
//! let mut txn = store.transaction().unwrap();
//! let requests = machine.outgoing_requests(&mut txn, now).unwrap();
//! // The key upload, then a `/keys/query` for our own user (TRK-10).
//! assert_eq!(requests.len(), 2);
//! // ... send it, then push the response back:
//! let id = requests[0].request_id().to_owned();
//! machine
//!     .mark_request_as_sent(&mut txn, &id, r#"{"one_time_key_counts":{"signed_curve25519":25}}"#, now)
//!     .unwrap();
//! txn.commit().unwrap();
//! ```

mod account;
pub mod b64;
mod backoff;
pub mod canonical;
mod device_cache;
mod device_keys;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz_entry;
mod key_cache;
pub mod key_export;
mod machine;
mod machine_requests;
mod machine_rooms;
mod machine_types;
mod megolm;
mod olm;
mod request_bodies;
mod requests;
mod revision_cache;
mod room_cache;
mod shared;
pub mod signing;
mod sorted;
pub mod store;
mod time;
mod to_device;
mod tracked_cache;
mod tracking;
mod wedged;

pub use account::{MEGOLM_ALGORITHM, OLM_ALGORITHM, SIGNED_CURVE25519, ServerKeyCounts};
pub use device_keys::{DeviceKeysError, VerifiedDeviceKeys, verify_device_keys};
pub use machine::{OlmMachine, ResponseOutcome};
pub use machine_types::{
    DeviceInfo, OpenError, Recipients, ResponseError, RoomUpdate, SyncChanges, SyncError,
    SyncOutcome,
};
pub use megolm::explain::Explanation;
pub use megolm::export::ImportOutcome;
pub use megolm::receive::RoomKeyError;
pub use megolm::{
    DecryptedRoomEvent, RoomDecryptError, RoomError, RoomEventOutcome, ShareOutcome, SharePolicy,
    TrustVerdict,
};
pub use olm::claim::{ClaimFailure, ClaimOutcome};
pub use olm::{DecryptedToDevice, EncryptOutcome, SenderTrust, ToDeviceError};
pub use requests::{HttpMethod, OutgoingRequest, RequestKind};
pub use ruma;
pub use time::Timestamp;
pub use to_device::ToDeviceOutcome;
pub use tracking::{DeviceRejection, QueryOutcome, RejectedDevice};
pub use vodozemac;
