//! Time enters the machine only as an argument.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as given by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// One hour, in milliseconds.
    pub const HOUR_MS: u64 = 60 * 60 * 1000;

    /// The time `ms` milliseconds later, saturating.
    pub fn plus_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}
