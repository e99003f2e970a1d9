-- A key ring entry may carry a certificate: the SAML SP encryption key (purpose
-- 'saml_encryption') is published in the SP metadata as an X.509 certificate, which must
-- be the same on every node and across restarts.
ALTER TABLE signing_keys ADD COLUMN certificate TEXT;
