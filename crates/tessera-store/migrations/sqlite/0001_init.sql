-- Tessera schema, version 1 (SQLite).
-- Lists (grant types, scopes, roles, CIDRs) are JSON arrays: they are read and written
-- whole, never queried by element.

CREATE TABLE orgs (
    id            INTEGER PRIMARY KEY,
    slug          TEXT    NOT NULL UNIQUE,
    enabled       INTEGER NOT NULL DEFAULT 1,
    sso_enforced  INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE scopes (
    org_id        INTEGER NOT NULL REFERENCES orgs(id),
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE users (
    id               TEXT    PRIMARY KEY,
    org_id           INTEGER NOT NULL REFERENCES orgs(id),
    user_type        TEXT    NOT NULL CHECK (user_type IN ('human', 'service')),
    username         TEXT    NOT NULL,
    email            TEXT,
    roles            TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('active', 'disabled', 'locked')),
    state_changed_by TEXT,
    state_changed_at INTEGER,
    locked_until     INTEGER,
    password_hash    TEXT,
    created_at       INTEGER NOT NULL,
    UNIQUE (org_id, username)
);

CREATE TABLE clients (
    client_id          TEXT    PRIMARY KEY,
    org_id             INTEGER NOT NULL REFERENCES orgs(id),
    name               TEXT    NOT NULL,
    enabled            INTEGER NOT NULL,
    grant_types        TEXT    NOT NULL,
    scopes             TEXT    NOT NULL,
    redirect_uris      TEXT    NOT NULL,
    auth_methods       TEXT    NOT NULL,
    ip_allowlist       TEXT    NOT NULL,
    service_account_id TEXT    REFERENCES users(id),
    token_ttl          INTEGER NOT NULL,
    created_at         INTEGER NOT NULL
);
CREATE INDEX clients_org ON clients (org_id);

CREATE TABLE client_secrets (
    id             TEXT    PRIMARY KEY,
    client_id      TEXT    NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    hash           BLOB    NOT NULL,
    hint           TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER,
    revoked_at     INTEGER,
    last_used_at   INTEGER,
    last_used_from TEXT
);
CREATE INDEX client_secrets_client ON client_secrets (client_id);

CREATE TABLE auth_failures (
    client_id     TEXT    NOT NULL,
    source_ip     TEXT    NOT NULL,
    failures      INTEGER NOT NULL,
    last_failure  INTEGER NOT NULL,
    blocked_until INTEGER,
    PRIMARY KEY (client_id, source_ip)
);

CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY,
    request_id   TEXT    NOT NULL UNIQUE,
    time_ms      INTEGER NOT NULL,
    org_id       INTEGER,
    kind         TEXT    NOT NULL,
    actor        TEXT,
    client_id    TEXT,
    subject      TEXT,
    source_ip    TEXT,
    outcome      TEXT    NOT NULL,
    reason       TEXT,
    description  TEXT,
    grant_type   TEXT,
    scope        TEXT,
    secret_id    TEXT,
    secret_hint  TEXT,
    trace        TEXT    NOT NULL,
    change       TEXT
);
CREATE INDEX audit_events_org_seq ON audit_events (org_id, seq);

CREATE TABLE signing_keys (
    kid          TEXT    PRIMARY KEY,
    alg          TEXT    NOT NULL,
    sealed       BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    retired_at   INTEGER,
    remove_after INTEGER
);
