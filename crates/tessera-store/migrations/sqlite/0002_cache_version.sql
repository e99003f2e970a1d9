-- A version number bumped by every change to what the token path caches (clients,
-- secrets, users, scopes, orgs), so every node can tell when its cache is stale.
CREATE TABLE tessera_meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO tessera_meta (key, value) VALUES ('cache_version', 0);
