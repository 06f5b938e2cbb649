-- Schema version 5: which peers' Olm sessions each save touched, by the
-- Olm revision it produced, so a cache of live sessions drops only those
-- (a NULL key: too many to list, drop everything). Pruned as it grows.
CREATE TABLE olm_changes (
    seq        INTEGER PRIMARY KEY,
    revision   TEXT NOT NULL,
    sender_key TEXT
);
CREATE INDEX olm_changes_by_revision ON olm_changes (revision);
