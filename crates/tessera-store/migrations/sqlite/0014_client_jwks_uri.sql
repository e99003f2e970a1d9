-- A client may publish its public keys at a URL instead (jwks_uri); at most one of the two is set.
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;
