//! staunch
pub use staunch_core as core;
