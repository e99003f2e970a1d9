-- Which address started each pending SAML login, so that what unauthenticated requests
-- can store is bounded per address (Store::put_saml_pending).
ALTER TABLE saml_pending ADD COLUMN source_ip TEXT NOT NULL DEFAULT '';
CREATE INDEX saml_pending_source ON saml_pending (source_ip, expires_at);
CREATE INDEX saml_pending_org ON saml_pending (org_id);
