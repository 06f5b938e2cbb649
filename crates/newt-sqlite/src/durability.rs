//! Which commits wait for the disk.
//!
//! The connection runs `synchronous = NORMAL`: in WAL mode a commit is
//! then written but not synced, and the log on disk is always a prefix of
//! the commits. A commit holding anything newt cannot redo (keys,
//! sessions, queued messages, values an embedder set) is followed by one
//! small fully synchronous commit, which syncs the log and with it every
//! commit before. A commit holding only redoable writes (made with
//! `StoreTxn::defer_durability` on: device lists, planned requests,
//! MEG-08 records) skips the sync: a power loss can take it only together
//! with every commit after it, and newt redoes its work. A crashed process
//! loses nothing either way.
//!
//! Writes are told apart by SQLite's count of changed rows on the
//! connection, read at each switch: every write is counted without each
//! write path marking itself.

use rusqlite::Connection;

/// Rows a transaction changed outside deferral, counted at the switches.
#[derive(Debug)]
pub(crate) struct Durability {
    deferring: bool,
    /// Changes counted when the current stretch outside deferral began.
    since: u64,
    /// Rows changed outside deferral in earlier stretches.
    counted: u64,
}

impl Durability {
    pub(crate) fn new(conn: &Connection) -> Self {
        Self {
            deferring: false,
            since: conn.total_changes(),
            counted: 0,
        }
    }

    pub(crate) fn defer(&mut self, conn: &Connection, defer: bool) {
        match (self.deferring, defer) {
            (false, true) => self.counted += conn.total_changes() - self.since,
            (true, false) => self.since = conn.total_changes(),
            _ => {}
        }
        self.deferring = defer;
    }

    /// Whether the commit must be synced: a row changed outside deferral.
    pub(crate) fn needed(&self, conn: &Connection) -> bool {
        let open = if self.deferring {
            0
        } else {
            conn.total_changes() - self.since
        };
        self.counted + open > 0
    }
}

/// Makes every commit so far durable: one fully synchronous commit of one
/// counter syncs the log, and with it all that came before.
pub(crate) fn sync_log(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    let written = conn.execute(
        "INSERT INTO meta (key, value) VALUES ('synced_commits', 1)
         ON CONFLICT(key) DO UPDATE SET value = value + 1",
        [],
    );
    let restored = conn.pragma_update(None, "synchronous", "NORMAL");
    written.and(restored)
}
