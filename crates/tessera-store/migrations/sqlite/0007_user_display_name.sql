-- The person's name as their IdP gives it (SAML attribute mapping) or an admin sets it.
ALTER TABLE users ADD COLUMN display_name TEXT;
