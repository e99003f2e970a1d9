-- The SAML service provider's AuthnRequest signing key: one per deployment (all orgs and
-- nodes sign with it), the private key sealed with the master key, the certificate as
-- PEM for the SP metadata.
CREATE TABLE saml_sp_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    sealed      BLOB    NOT NULL,
    certificate TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
