//! Numbered schema migrations, tracked in `PRAGMA user_version`.

use rusqlite::{Connection, Transaction};

/// Each entry upgrades the schema from its index to its index + 1.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_olm_channel.sql"),
    include_str!("../migrations/0003_rooms.sql"),
    include_str!("../migrations/0004_request_bodies.sql"),
    include_str!("../migrations/0005_olm_changes.sql"),
    include_str!("../migrations/0006_index_uses.sql"),
    include_str!("../migrations/0007_box_v2.sql"),
    include_str!("../migrations/0008_outdated_users.sql"),
    include_str!("../migrations/0009_outbound_sets.sql"),
    include_str!("../migrations/0010_room_encryption.sql"),
    include_str!("../migrations/0011_tracked_flag.sql"),
    include_str!("../migrations/0012_index_runs.sql"),
];

/// The newest schema version this build knows.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// The schema version of the open database.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Applies every migration after `from` in one transaction; `after_first`
/// runs inside it, for rows a new store needs.
pub(crate) fn migrate(
    conn: &Connection,
    from: i64,
    after_first: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    if from >= LATEST {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(from).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    after_first(&tx)?;
    tx.commit()
}
