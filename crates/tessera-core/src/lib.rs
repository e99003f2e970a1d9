//! Tessera's core: the domain, the token policy and its decision trace.
//!
//! No HTTP, no SQL, no I/O: the server turns requests into plain values and calls
//! [`decision::decide`]; the store implements the traits in [`store`]. Everything here is
//! deterministic given its inputs (the clock is a parameter), so it is tested exhaustively
//! with plain unit tests.

pub mod audit;
pub mod client_keys;
pub mod decision;
pub mod forwarded;
pub mod interactive;
pub mod jwt;
pub mod model;
pub mod reason;
pub mod request;
pub mod scim;
pub mod secret;
pub mod session;
pub mod sso;
pub mod store;
pub mod text;
pub mod throttle;
pub mod trace;

pub use reason::{OAuthError, Reason};
