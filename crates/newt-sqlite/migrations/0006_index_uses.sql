-- MEG-08 records keyed by small integers: one compact WITHOUT ROWID tree
-- instead of a table plus an index on long text keys. A sync writes one of
-- these per decrypted event, so their size is what its commit costs.
CREATE TABLE megolm_index_sessions (
    id         INTEGER PRIMARY KEY,
    room_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    UNIQUE (room_id, session_id)
);
CREATE TABLE megolm_index_uses (
    session          INTEGER NOT NULL,
    idx              INTEGER NOT NULL,
    event_id         TEXT NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    PRIMARY KEY (session, idx)
) WITHOUT ROWID;
INSERT INTO megolm_index_sessions (room_id, session_id)
    SELECT DISTINCT room_id, session_id FROM megolm_indices ORDER BY room_id, session_id;
-- Timestamps are u64 stored as their i64 bits; one above i64::MAX (which
-- SQLite's JSON reads as a real) becomes u64::MAX, its nearest value.
INSERT INTO megolm_index_uses (session, idx, event_id, origin_server_ts)
    SELECT s.id, i.idx, json_extract(i.data, '$.event_id'),
           CASE typeof(json_extract(i.data, '$.origin_server_ts'))
               WHEN 'integer' THEN json_extract(i.data, '$.origin_server_ts')
               ELSE -1 END
    FROM megolm_indices i
    JOIN megolm_index_sessions s ON s.room_id = i.room_id AND s.session_id = i.session_id;
DROP TABLE megolm_indices;
