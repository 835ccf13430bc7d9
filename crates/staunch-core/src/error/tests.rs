use super::*;
use std::io;

#[test]
fn classification_table_row_by_row() {
    use ErrorClass::*;
    use ErrorKind::*;
    let table = [
        (RateLimited, Transient),
        (Overloaded, Transient),
        (Server, Transient),
        (Timeout, Transient),
        (Connect, Transient),
        (Network, Transient),
        (TruncatedResponse, Transient),
        (Other, Transient),
        (QuotaExhausted, Unavailable),
        (Authentication, Unavailable),
        (PermissionDenied, Unavailable),
        (ModelNotFound, Unavailable),
        (ContextLengthExceeded, Unavailable),
        (ContentFiltered, Unavailable),
        (CircuitOpen, Unavailable),
        (MalformedResponse, Unavailable),
        (RequestTooLarge, Unavailable),
        (FeatureUnsupported, Unavailable),
        (ValidationFailed, Unavailable),
        (InvalidRequest, Fatal),
        (BudgetExhausted, Fatal),
        (Cancelled, Fatal),
    ];
    assert_eq!(table.len(), ErrorKind::ALL.len(), "every kind has a row");
    for (kind, class) in table {
        assert_eq!(kind.class(), class, "{kind}");
        assert_eq!(LlmError::new(kind, "").class(), class, "{kind}");
        assert_eq!(DefaultClassify.classify(&LlmError::new(kind, "")), class);
    }
    assert!(Transient.is_retryable() && !Unavailable.is_retryable() && !Fatal.is_retryable());
    assert!(
        Transient.allows_fallback() && Unavailable.allows_fallback() && !Fatal.allows_fallback()
    );
}

#[test]
fn statuses_map_to_the_design_kinds() {
    use ErrorKind::*;
    for (status, kind) in [
        (400, InvalidRequest),
        (401, Authentication),
        (402, QuotaExhausted),
        (403, PermissionDenied),
        (404, ModelNotFound),
        (408, Timeout),
        (409, Server),
        (413, InvalidRequest),
        (422, InvalidRequest),
        (429, RateLimited),
        (500, Server),
        (502, Server),
        (503, Overloaded),
        (504, Server),
        (529, Overloaded),
        (599, Server),
        (451, InvalidRequest),
    ] {
        assert_eq!(ErrorKind::from_status(status), kind, "{status}");
    }
}

#[test]
fn kind_names_are_unique_and_serde_agrees() {
    let mut names: Vec<_> = ErrorKind::ALL.iter().map(ErrorKind::as_str).collect();
    for kind in ErrorKind::ALL {
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ErrorKind::ALL.len());
}

#[test]
fn from_box_recovers_an_llm_error_intact() {
    let original = LlmError::new(ErrorKind::Overloaded, "Overloaded")
        .with_status(529)
        .with_retry_after(Duration::from_secs(3))
        .with_request_id("req_1")
        .with_provider("anthropic");
    let boxed: BoxError = original.into();
    let back = LlmError::from_box(boxed);
    assert_eq!(back.kind, ErrorKind::Overloaded);
    assert_eq!(back.status, Some(529));
    assert_eq!(back.retry_after, Some(Duration::from_secs(3)));
    assert_eq!(back.request_id.as_deref(), Some("req_1"));
    assert!(back.source().is_none());
}

#[test]
#[cfg(feature = "tower")]
fn from_box_maps_tower_errors() {
    let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
    let e = LlmError::from_box(elapsed);
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(e.source().unwrap().is::<tower::timeout::error::Elapsed>());

    let shed: BoxError = Box::new(tower::load_shed::error::Overloaded::new());
    assert_eq!(LlmError::from_box(shed).kind, ErrorKind::Overloaded);
}

#[derive(Debug)]
struct Wrapper(io::Error);
impl fmt::Display for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client error (Connect)")
    }
}
impl StdError for Wrapper {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn from_box_finds_io_errors_in_the_chain() {
    for (io_kind, want) in [
        (io::ErrorKind::ConnectionRefused, ErrorKind::Connect),
        (io::ErrorKind::HostUnreachable, ErrorKind::Connect),
        (io::ErrorKind::TimedOut, ErrorKind::Timeout),
        (io::ErrorKind::ConnectionReset, ErrorKind::Network),
        (io::ErrorKind::UnexpectedEof, ErrorKind::Network),
    ] {
        let direct: BoxError = Box::new(io::Error::new(io_kind, "x"));
        assert_eq!(LlmError::from_box(direct).kind, want, "{io_kind:?}");
        let wrapped: BoxError = Box::new(Wrapper(io::Error::new(io_kind, "x")));
        let e = LlmError::from_box(wrapped);
        assert_eq!(e.kind, want, "wrapped {io_kind:?}");
        assert_eq!(e.message, "client error (Connect)");
        assert_eq!(LlmError::from(io::Error::new(io_kind, "y")).kind, want);
    }
}

#[test]
fn from_box_calls_the_unknown_other() {
    let boxed: BoxError = "something odd".into();
    let e = LlmError::from_box(boxed);
    assert_eq!(e.kind, ErrorKind::Other);
    assert_eq!(e.message, "something odd");
    assert_eq!(e.class(), ErrorClass::Transient);
}

#[test]
fn display_and_debug_never_show_keys() {
    let e = LlmError::new(
        ErrorKind::Authentication,
        "Incorrect API key provided: sk-proj-AbCdEf123456.",
    )
    .with_status(401)
    .with_source(io::Error::other("bad header Bearer sk-secret-1"));
    for shown in [e.to_string(), format!("{e:?}"), format!("{e:#?}")] {
        assert!(!shown.contains("AbCdEf"), "{shown}");
        assert!(!shown.contains("secret-1"), "{shown}");
    }
    assert_eq!(
        e.to_string(),
        "authentication (HTTP 401): Incorrect API key provided: sk-[redacted]."
    );
}

#[test]
fn earlier_targets_are_reported_and_counted() {
    let mut last = LlmError::new(ErrorKind::Overloaded, "b").with_spent(Usage::new(1, 1));
    last.earlier
        .push(LlmError::new(ErrorKind::RateLimited, "a").with_spent(Usage::new(10, 0)));
    assert_eq!(last.total_spent(), Usage::new(11, 1));
    assert_eq!(
        last.to_string(),
        "overloaded: b; earlier target 1: rate_limited: a"
    );
}

#[test]
fn an_error_is_one_pointer_and_its_fields_are_reachable() {
    assert_eq!(
        std::mem::size_of::<LlmError>(),
        std::mem::size_of::<usize>()
    );
    let mut e = LlmError::new(ErrorKind::Server, "x");
    e.status = Some(502);
    e.attempts += 2;
    assert_eq!(
        (e.kind, e.status, e.attempts),
        (ErrorKind::Server, Some(502), 3)
    );
}

#[test]
fn attempts_are_set_and_added_through_one_rule() {
    let e = LlmError::new(ErrorKind::CircuitOpen, "open").with_attempts(0);
    assert_eq!(e.attempts, 0, "an error raised before any call");
    let mut e = LlmError::new(ErrorKind::Server, "x");
    e.set_attempts(5);
    assert_eq!(e.attempts, 5);
    e.add_attempts(0);
    assert_eq!(e.attempts, 5, "adding nothing changes nothing");
    e.add_attempts(2);
    assert_eq!(e.attempts, 7);
}

#[test]
fn adding_attempts_saturates() {
    let mut e = LlmError::new(ErrorKind::Server, "x").with_attempts(u32::MAX - 1);
    e.add_attempts(1);
    assert_eq!(e.attempts, u32::MAX);
    e.add_attempts(u32::MAX);
    assert_eq!(e.attempts, u32::MAX);
}

#[test]
fn provider_codes_are_kept_short_and_secret_free() {
    let code = |c: &str| {
        LlmError::new(ErrorKind::InvalidRequest, "")
            .with_code(c)
            .code
            .clone()
    };
    assert_eq!(
        code("content_policy_violation").as_deref(),
        Some("content_policy_violation")
    );
    assert_eq!(
        code("ResponsibleAIPolicyViolation").as_deref(),
        Some("ResponsibleAIPolicyViolation")
    );
    assert_eq!(
        code("invalid_request_error").as_deref(),
        Some("invalid_request_error")
    );
    assert_eq!(code("400").as_deref(), Some("400"));
    // Only [A-Za-z0-9_.-] survives; nothing left means no code.
    assert_eq!(code("a b\"\n{c}").as_deref(), Some("abc"));
    assert_eq!(code(" \u{202e}<>"), None);
    assert_eq!(code(""), None);
    // Bounded.
    let long = "x".repeat(10_000);
    assert_eq!(code(&long).map(|c| c.len()), Some(LlmError::MAX_CODE_LEN));
    // Key-shaped codes are dropped whole, not half-masked.
    assert_eq!(code("sk-ant-api03-AbC_d-9"), None);
    assert_eq!(code("sk-proj-abc"), None);
    assert_eq!(code("3f9c2b7e1d4a8f6e3f9c2b7e"), None);
    assert_eq!(code("bad_key_AKIA4Z3F9C2B7E1D4A8F"), None);
    // The Debug output shows it.
    let e = LlmError::new(ErrorKind::ContentFiltered, "m").with_code("content_filter");
    assert!(format!("{e:?}").contains("code: \"content_filter\""));
}
