-- How the person logged in (saml or password) for each code and grant: a refresh after
-- the org started enforcing SSO is refused for a password login.
ALTER TABLE auth_codes ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'password';
ALTER TABLE login_grants ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'password';
