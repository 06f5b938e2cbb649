-- Whether a user is tracked, beside the record as schema 8 keeps whether
-- it is outdated: a room's members are checked before every message, and
-- reading the flag out of each record's JSON cost more than the rest of
-- the check.
ALTER TABLE tracked_users ADD COLUMN tracked INTEGER NOT NULL DEFAULT 0;
UPDATE tracked_users SET tracked = 1 WHERE json_extract(data, '$.tracked');
-- Covering: checking a member reads the index alone.
CREATE INDEX tracked_users_tracked ON tracked_users (user_id, tracked) WHERE tracked = 1;
