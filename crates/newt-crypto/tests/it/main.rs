//! newt-crypto's scenario tests (sans-I/O, in-memory store, explicit time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cloned_ref_to_slice_refs, clippy::type_complexity)]

mod account;
mod attacks;
mod device_cache;
mod megolm_cache;
mod olm;
mod olm_cache;
mod quiet_share;
mod raw_peer;
mod request_bodies;
mod room_key_resend;
mod rooms;
mod rooms_router;
mod roundtrip;
mod router;
mod settled;
mod tracking;
