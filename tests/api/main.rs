//! Black-box tests: each starts the real server on a fresh SQLite database and a random
//! loopback port, and talks HTTP to it. One test binary, so it links once.

mod admin;
mod cli;
mod code_flow;
mod console;
mod console_browser;
mod diagnose;
mod golden;
mod hardening;
mod hardening_admin;
mod helpers;
mod interop;
mod interop_oidc;
mod introspection;
mod login_page;
mod multinode;
mod no_secret_leaks;
mod openapi;
mod peer_oidc_provider;
mod pg_outage;
mod private_key_jwt;
mod saml_cli;
mod saml_e2e;
mod scim;
mod scim_tester;
mod sso;
mod token;
