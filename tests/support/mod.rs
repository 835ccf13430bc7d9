//! What the integration tests share: the loopback helpers of the providers
//! crate (the scripted in-process fake is `staunch-test`'s).
#![allow(dead_code)]

/// The loopback helpers are the providers crate's own: one copy for both
/// test suites.
#[path = "../../crates/staunch-providers/tests/support/mod.rs"]
pub mod wire;
