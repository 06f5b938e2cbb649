-- A room's encryption settings apart from its members: encrypting each
-- room event needs only the settings, and in a room of 1,000 members the
-- member list was nearly all of the row. Written with the room.
CREATE TABLE room_encryption (
    room_id TEXT PRIMARY KEY NOT NULL,
    data    TEXT NOT NULL
);
INSERT INTO room_encryption (room_id, data)
    SELECT room_id, json_extract(data, '$.encryption') FROM rooms
    WHERE json_type(data, '$.encryption') = 'object';
