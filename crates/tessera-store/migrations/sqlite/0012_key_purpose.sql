-- What a signing key signs: access tokens (as before), or OpenID Connect ID tokens,
-- which OpenID Connect wants in RS256 whatever the access tokens use. A rotation retires
-- the current key of its own purpose only.
ALTER TABLE signing_keys ADD COLUMN purpose TEXT NOT NULL DEFAULT 'access';
