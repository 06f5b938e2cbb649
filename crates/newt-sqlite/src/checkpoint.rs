//! WAL checkpoints on a thread of their own.
//!
//! A checkpoint copies the WAL back into the database file and syncs it.
//! SQLite's automatic checkpoint runs inside whichever commit crosses the
//! threshold, so one input in every few megabytes written paid several
//! milliseconds for it. Here each commit only pokes this thread, which
//! checkpoints (PASSIVE: it never blocks the writer) at most once per
//! [`INTERVAL`]. Durability does not depend on it: a commit is synced in
//! the WAL before it returns. If the thread falls behind, SQLite's own
//! checkpoint at [`FOREGROUND_PAGES`] still bounds the WAL.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// At most one background checkpoint per this long.
const INTERVAL: Duration = Duration::from_millis(250);

/// The WAL size, in pages, at which a commit checkpoints by itself (the
/// SQLite default, used when there is no background thread, is 1,000).
pub(crate) const FOREGROUND_PAGES: i64 = 16_384;

/// The background checkpoint thread of one store.
pub(crate) struct Checkpointer {
    poke: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to `path`; `None` if
    /// either cannot be had (the store then checkpoints in its commits).
    pub(crate) fn start(path: &Path) -> Option<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        // One pending poke is enough: it means "there is something new".
        let (poke, pokes) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("newt-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &pokes))
            .ok()?;
        Some(Self {
            poke: Some(poke),
            thread: Some(thread),
        })
    }

    /// Something was committed: checkpoint soon. Never blocks.
    pub(crate) fn poke(&self) {
        // Full: a poke is pending already. Disconnected: the thread is gone
        // and SQLite's own threshold takes over.
        if let Some(poke) = &self.poke {
            let _ = poke.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after its current checkpoint.
        self.poke = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, pokes: &mpsc::Receiver<()>) {
    let mut pending = false;
    loop {
        if !pending && pokes.recv().is_err() {
            return;
        }
        // A failed checkpoint is retried at the next poke; the commit's
        // own threshold keeps the WAL bounded meanwhile.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        // Commits during the pause are remembered, not acted on at once.
        pending = false;
        let until = Instant::now() + INTERVAL;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match pokes.recv_timeout(left) {
                Ok(()) => pending = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}
