//! Runs work at one of several stack offsets. vodozemac's Megolm
//! decryption (its Ed25519 check) took 39 µs at most offsets of the stack
//! within a 4 KiB page and up to 46 µs in a window of about a kilobyte,
//! which moves with the binary's layout (it looks like 4K aliasing; this
//! machine has no hardware counters to confirm it). A newt run and a limit
//! run each met one offset: in one build newt's landed in the window and
//! the limit's did not, and the ratio came out 6–10% worse than in the
//! same code built with frame pointers. Each pair (or turn) now runs both
//! halves at the same offset, stepping through the page, so that both
//! meet the window alike.

use std::hint::black_box;

/// Offsets, in bytes, one page apart at most.
const STEP: usize = 512;

/// How many offsets a page holds at [`STEP`].
pub const COUNT: usize = 4096 / STEP;

/// Runs `f` deeper in the stack by the `n`th offset (mod [`COUNT`]).
pub fn at<R>(n: usize, f: impl FnOnce() -> R) -> R {
    let mut f = Some(f);
    let mut out = None;
    let mut call = || out = f.take().map(|f| f());
    match n % COUNT {
        0 => padded::<0>(&mut call),
        1 => padded::<STEP>(&mut call),
        2 => padded::<{ 2 * STEP }>(&mut call),
        3 => padded::<{ 3 * STEP }>(&mut call),
        4 => padded::<{ 4 * STEP }>(&mut call),
        5 => padded::<{ 5 * STEP }>(&mut call),
        6 => padded::<{ 6 * STEP }>(&mut call),
        _ => padded::<{ 7 * STEP }>(&mut call),
    }
    out.unwrap_or_else(|| unreachable!("the work ran"))
}

/// Calls `f` below a frame of `N` bytes the optimiser must keep.
#[inline(never)]
fn padded<const N: usize>(f: &mut dyn FnMut()) {
    let mut pad = [0u8; N];
    black_box(&mut pad);
    f();
    black_box(&pad);
}
