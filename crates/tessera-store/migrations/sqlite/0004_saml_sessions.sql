-- SP-initiated logins in progress (RelayState handle -> AuthnRequest id), the replay
-- cache of SAML response and assertion ids shared by every node, and browser sessions.
CREATE TABLE saml_pending (
    handle     TEXT    PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES orgs(id),
    request_id TEXT    NOT NULL,
    return_to  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE saml_replay (
    org_id     INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, key)
);

-- Only the SHA-256 of the cookie's token is stored.
CREATE TABLE sessions (
    id_hash      BLOB    PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES orgs(id),
    user_id      TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    method       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX users_email ON users (org_id, lower(email));
