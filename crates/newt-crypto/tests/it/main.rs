//! newt-crypto's scenario tests (sans-I/O, in-memory store, explicit time).

mod account;
