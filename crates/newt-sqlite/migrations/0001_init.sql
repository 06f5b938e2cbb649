-- Schema version 1.
-- Secrets (pickles, tokens) are stored as XChaCha20-Poly1305 boxes whose
-- associated data names their slot, so a box cannot be moved to another row.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE account (
    id     INTEGER PRIMARY KEY NOT NULL CHECK (id = 0),
    pickle BLOB NOT NULL,
    state  TEXT NOT NULL
);
CREATE TABLE kv (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);
