//! newt-client against a real Synapse on 127.0.0.1 (started by
//! newt-testkit, one per test process).

mod common;
mod keys;
mod retries;
