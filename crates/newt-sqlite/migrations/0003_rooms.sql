-- Schema version 3: encrypted rooms.
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY NOT NULL,
    data    TEXT NOT NULL
);
CREATE TABLE outbound_sessions (
    room_id    TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    pickle     BLOB NOT NULL,
    data       TEXT NOT NULL
);
CREATE TABLE inbound_sessions (
    room_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle     BLOB NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (room_id, session_id)
);
CREATE TABLE megolm_indices (
    room_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    idx        INTEGER NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (room_id, session_id, idx)
);
CREATE TABLE undecrypted_events (
    room_id     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
CREATE INDEX undecrypted_by_session ON undecrypted_events (room_id, session_id);
CREATE TABLE withheld (
    room_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (room_id, session_id)
);
