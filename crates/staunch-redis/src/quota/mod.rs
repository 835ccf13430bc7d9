//! A quota (requests and tokens per window) shared by every replica
//! through Redis.

mod config;
mod future;
mod service;
mod state;

pub use config::{Limit, SharedQuotaConfig};
pub use future::ResponseFuture;
pub use service::{SharedQuota, SharedQuotaHandle, SharedQuotaLayer};
