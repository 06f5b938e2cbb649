//! State kept between inputs and shared by a machine's clones.

use std::sync::{Mutex, MutexGuard};

/// Locks `shared`, poisoned or not. Everything kept this way (caches,
/// held request bodies) changes by single map operations or whole
/// replacements, so a panic elsewhere cannot leave it half-written.
pub(crate) fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
