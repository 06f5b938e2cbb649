-- MEG-08 records as runs: one row holds the uses one save made of one
-- session, packed (`index_uses.rs` has the layout). A sync of a thousand
-- events over a hundred sessions wrote a thousand rows into a hundred
-- places of one tree; now it writes a hundred rows at the end of a table
-- and a hundred small index entries. A later run wins for an index saved
-- twice: the rowid orders them.
CREATE TABLE megolm_index_runs (
    id      INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,
    first   INTEGER NOT NULL,
    last    INTEGER NOT NULL,
    uses    BLOB NOT NULL
);
-- Covering for the search: the runs of a session that reach an index.
CREATE INDEX megolm_index_runs_reach ON megolm_index_runs (session, last, first);
-- Each stored use becomes a run of one, in the same layout: index (4
-- bytes), timestamp bits (8), event ID length (4), all big-endian, then
-- the event ID's bytes (one `unhex`: `||` would make text of a blob).
INSERT INTO megolm_index_runs (session, first, last, uses)
    SELECT session, idx, idx,
           unhex(printf('%08X%016X%08X', idx, origin_server_ts,
                        length(CAST(event_id AS BLOB)))
                 || hex(event_id))
    FROM megolm_index_uses ORDER BY session, idx;
DROP TABLE megolm_index_uses;
