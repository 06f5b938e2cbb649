-- Schema version 2: device tracking and the Olm channel.
-- Public records are JSON in `data`; secrets are sealed boxes.
CREATE TABLE tracked_users (
    user_id TEXT PRIMARY KEY NOT NULL,
    data    TEXT NOT NULL
);
CREATE TABLE devices (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE TABLE olm_sessions (
    sender_key TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle     BLOB NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (sender_key, session_id)
);
CREATE TABLE pending_requests (
    request_id TEXT PRIMARY KEY NOT NULL,
    seq        INTEGER NOT NULL,
    data       TEXT NOT NULL
);
CREATE TABLE queued_to_device (
    id      TEXT PRIMARY KEY NOT NULL,
    seq     INTEGER NOT NULL,
    data    TEXT NOT NULL,
    sealed  BLOB NOT NULL
);
