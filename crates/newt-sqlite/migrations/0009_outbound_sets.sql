-- A room's shared-with and withheld sets apart from its outbound session:
-- encrypting each room event reads and writes the session and its counts,
-- and in a room of 1,000 devices the sets were most of that row. They
-- name the session they belong to.
CREATE TABLE outbound_sets (
    room_id    TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    data       TEXT NOT NULL
);
INSERT INTO outbound_sets (room_id, session_id, data)
    SELECT room_id, session_id, json_object(
        'shared_with', json(COALESCE(json_extract(data, '$.shared_with'), '{}')),
        'withheld', json(COALESCE(json_extract(data, '$.withheld'), '{}')))
    FROM outbound_sessions;
UPDATE outbound_sessions SET data = json_remove(data, '$.shared_with', '$.withheld');
