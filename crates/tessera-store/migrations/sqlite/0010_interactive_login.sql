-- The interactive login: clients' code-flow settings, authorization codes, the grants
-- (refresh token families) a code exchange starts, their refresh tokens, and the ids of
-- client assertions already used.

ALTER TABLE clients ADD COLUMN interactive TEXT NOT NULL
    DEFAULT '{"pkce_required":true,"refresh_token_ttl":2592000,"refresh_idle_ttl":604800}';

-- A grant: what one login gave one client. Codes and refresh tokens belong to one; its
-- revocation ends them all (and makes its access tokens inactive at introspection).
CREATE TABLE login_grants (
    id             TEXT    PRIMARY KEY,
    org_id         INTEGER NOT NULL REFERENCES orgs(id),
    client_id      TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    nonce          TEXT,
    auth_time      INTEGER NOT NULL,
    sid            TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT
);
CREATE INDEX login_grants_user ON login_grants (org_id, user_id);
CREATE INDEX login_grants_client ON login_grants (client_id);
CREATE INDEX login_grants_sid ON login_grants (sid);

-- Only the SHA-256 of a code or a refresh token is stored.
CREATE TABLE auth_codes (
    code_hash      BLOB    PRIMARY KEY,
    grant_id       TEXT    NOT NULL,
    org_id         INTEGER NOT NULL,
    client_id      TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    code_challenge TEXT,
    nonce          TEXT,
    auth_time      INTEGER NOT NULL,
    sid            TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);
CREATE INDEX auth_codes_expiry ON auth_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash      BLOB    PRIMARY KEY,
    grant_id        TEXT    NOT NULL REFERENCES login_grants(id) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL,
    idle_expires_at INTEGER NOT NULL,
    used_at         INTEGER
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);

CREATE TABLE client_assertion_ids (
    client_id  TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertion_ids_expiry ON client_assertion_ids (expires_at);
