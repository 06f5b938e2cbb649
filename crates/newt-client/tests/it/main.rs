//! newt-client against a real Synapse on 127.0.0.1 (started by
//! newt-testkit, one per test process).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cloned_ref_to_slice_refs, clippy::type_complexity)]

mod batching;
mod common;
mod faults;
mod interop;
mod keys;
mod lying_server;
mod olm;
mod retries;
mod rooms;
