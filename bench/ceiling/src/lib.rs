//! Empty: the work is in `benches/ceiling.rs`.
