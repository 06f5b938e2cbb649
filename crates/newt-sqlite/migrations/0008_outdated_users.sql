-- Planning `/keys/query` runs on every call for outgoing requests and
-- needs only the users marked outdated: a flag beside each record, written
-- with it, and a partial index, so that planning reads those rows instead
-- of parsing every tracked user's JSON.
ALTER TABLE tracked_users ADD COLUMN outdated INTEGER NOT NULL DEFAULT 0;
UPDATE tracked_users SET outdated = 1
    WHERE json_extract(data, '$.tracked') AND json_extract(data, '$.outdated');
CREATE INDEX tracked_users_outdated ON tracked_users (user_id) WHERE outdated = 1;
