-- Schema version 4: a pending request's body in its own column, as sent,
-- instead of escaped inside the JSON metadata. Older rows keep the body in
-- `data` and leave this column NULL.
ALTER TABLE pending_requests ADD COLUMN body TEXT;
