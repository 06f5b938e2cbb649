-- No table changes. From this version secrets are sealed in boxes of
-- version 2 (AES-256-GCM-SIV, see key.rs), which older builds cannot
-- open: the version number makes them refuse the store as newer than
-- they know, instead of failing on the first new box.
SELECT 1;
