-- Long-lived SCIM bearer tokens (issue 20), for IdPs that hold one static token: bound to
-- a provisioning client (gone with it), stored as their SHA-256 only, revocable.
CREATE TABLE scim_tokens (
    id           TEXT    PRIMARY KEY,
    org_id       BIGINT  NOT NULL REFERENCES orgs(id),
    client_id    TEXT    NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    hash         BYTEA   NOT NULL UNIQUE,
    hint         TEXT    NOT NULL,
    description  TEXT,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX scim_tokens_org ON scim_tokens (org_id);
-- A user's groups, for roles recomputed when their memberships change.
CREATE INDEX scim_group_members_user ON scim_group_members (user_id);
