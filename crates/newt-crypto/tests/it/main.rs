//! newt-crypto's scenario tests (sans-I/O, in-memory store, explicit time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod account;
mod attacks;
mod olm;
mod raw_peer;
mod router;
mod tracking;
