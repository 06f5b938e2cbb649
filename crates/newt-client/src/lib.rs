//! # newt-client
//!
//! The async driver around `newt-crypto`: password login (the device ID is
//! kept across runs), key upload, the sync loop, and one retry policy for
//! every request. It owns the I/O the state machine refuses to do: HTTP
//! with `reqwest`, the clock, and the SQLite store from `newt-sqlite`.

mod client;
mod e2ee;
mod error;
pub mod http;
mod messages;
pub mod profile;
mod requests;
pub mod retry;
mod rooms;

pub use client::{Client, Identity, LoginOptions, SyncSummary};
pub use error::ClientError;
pub use messages::RoomMessage;
pub use newt_crypto;
pub use newt_sqlite;
pub use rooms::{CreateRoom, RoomSummary};
