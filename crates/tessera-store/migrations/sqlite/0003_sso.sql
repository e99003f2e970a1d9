-- SSO: the per-org SAML configuration, human password bookkeeping for the lockout policy
-- and the enforcement-impact preview, and the SAML identity link.
ALTER TABLE users ADD COLUMN saml_name_id TEXT;
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN last_password_login_at INTEGER;
CREATE UNIQUE INDEX users_saml_link ON users (org_id, saml_name_id) WHERE saml_name_id IS NOT NULL;

-- The configuration is read and written whole (JSON); `enforced` lives in orgs.
CREATE TABLE sso_configs (
    org_id     INTEGER PRIMARY KEY REFERENCES orgs(id),
    config     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Each client's last password grant, for the enforcement-impact preview (cheaper than
-- scanning the audit trail).
CREATE TABLE password_grant_uses (
    client_id    TEXT    PRIMARY KEY REFERENCES clients(client_id) ON DELETE CASCADE,
    org_id       INTEGER NOT NULL REFERENCES orgs(id),
    last_used_at INTEGER NOT NULL
);
