//! # newt-testkit
//!
//! Real components for newt's tests and demo:
//! - [`synapse`]: a real Synapse homeserver, installed from PyPI into a
//!   cache directory on first use, bound to 127.0.0.1 on a free port;
//! - [`proxy`]: a fault-injecting HTTP proxy between a client and Synapse;
//! - [`nio`]: matrix-nio, an independent E2EE client from PyPI, as a peer.
//!
//! Nothing here talks to anything but 127.0.0.1.

pub mod http;
pub mod nio;
pub mod proxy;
pub mod synapse;

pub use proxy::{Action, Proxy, Rule};
pub use synapse::{HarnessError, Synapse, SynapseOptions};
