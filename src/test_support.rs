//! The layers' unit tests use the workspace's one scripted fake provider,
//! `staunch-test`'s.

use staunch_core::{ChatRequest, Message};

pub(crate) use staunch_test::{Step, fail, fail_after};

/// The fake provider of the unit tests.
pub(crate) type Scripted = staunch_test::FakeProvider;

pub(crate) fn request() -> ChatRequest {
    ChatRequest::new("gpt-4o", vec![Message::user("hello")])
}
