-- A client's public keys (a JWK Set) for private_key_jwt authentication.
ALTER TABLE clients ADD COLUMN jwks TEXT;
