-- The change feed: what each write changed of the token path's cached facts (an org,
-- a client, a user), so every node forgets exactly that. Kept an hour; a node that
-- falls further behind forgets everything. Replaces the one cache version number.
CREATE TABLE tessera_changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT    NOT NULL,
    key  TEXT    NOT NULL,
    at   INTEGER NOT NULL
);
CREATE INDEX tessera_changes_at ON tessera_changes (at);
DELETE FROM tessera_meta WHERE key = 'cache_version';
