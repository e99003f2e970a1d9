-- SCIM 2.0 provisioning (issue 20): a human's link to the org's provisioning (the IdP's
-- externalId, the provisioning client, when; and when SCIM deleted them: they stay as
-- a disabled human, no longer visible to SCIM), and SCIM groups with their members.
ALTER TABLE users ADD COLUMN scim_external_id TEXT;
ALTER TABLE users ADD COLUMN scim_provisioned_by TEXT;
ALTER TABLE users ADD COLUMN scim_provisioned_at BIGINT;
ALTER TABLE users ADD COLUMN scim_deleted_at BIGINT;
CREATE UNIQUE INDEX users_scim_external_id ON users (org_id, scim_external_id)
    WHERE scim_external_id IS NOT NULL;

CREATE TABLE scim_groups (
    id           TEXT    PRIMARY KEY,
    org_id       BIGINT  NOT NULL REFERENCES orgs(id),
    display_name TEXT    NOT NULL,
    external_id  TEXT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE UNIQUE INDEX scim_groups_name ON scim_groups (org_id, display_name);

CREATE TABLE scim_group_members (
    group_id TEXT NOT NULL REFERENCES scim_groups(id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users(id),
    PRIMARY KEY (group_id, user_id)
);

-- The scope a provisioning client needs, in every org's catalogue (bootstrap adds it to
-- new orgs).
INSERT INTO scopes (org_id, name, description)
SELECT id, 'tessera:scim', 'SCIM 2.0 provisioning of this org''s people (/scim/v2/<org>/)'
FROM orgs
WHERE NOT EXISTS (SELECT 1 FROM scopes s WHERE s.org_id = orgs.id AND s.name = 'tessera:scim');
