//! The configuration file: every field and default, and errors that name
//! the line and the field.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use staunch_gateway::config::*;

const KEY_HASH: &str = "e2186dbdb1bb4193608605e84f33208765b5693b55edd4f730a719a100eeea6f";

/// The errors of a config that must not parse.
fn errors(text: &str) -> Vec<ConfigError> {
    match Config::parse(text, "gw.toml") {
        Ok(c) => panic!("expected errors, parsed {c:#?}"),
        Err(e) => {
            // Display: one error per line.
            assert_eq!(e.to_string().lines().count(), e.0.len(), "{e}");
            e.0
        }
    }
}

/// The only error of a config.
fn error(text: &str) -> ConfigError {
    let mut e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    e.remove(0)
}

fn find<'a>(errors: &'a [ConfigError], field: &str) -> &'a ConfigError {
    errors
        .iter()
        .find(|e| e.field == field)
        .unwrap_or_else(|| panic!("no error for {field} in {errors:#?}"))
}

const MINIMAL: &str = r#"
[providers.openai]
kind = "openai"

[[routes]]
model = "*"
targets = [{ provider = "openai", model = "gpt-4o" }]
"#;

#[test]
fn minimal_config_takes_every_default() {
    let c = Config::parse(MINIMAL, "gw.toml").unwrap();
    assert_eq!(c.server, Server::default());
    assert_eq!(c.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.server.max_body_bytes, 2 * 1024 * 1024);
    assert_eq!(c.server.max_concurrency, 256);
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.server.log_format, LogFormat::Json);

    let p = &c.providers["openai"];
    assert_eq!(p, &Provider::new(ProviderKind::OpenAi));
    assert_eq!(p.base_url, None);
    assert_eq!(p.api_key_env, None);
    assert!(p.headers.is_empty());
    assert_eq!(p.connect_timeout, Duration::from_secs(10));
    assert_eq!(p.request_timeout, Duration::from_secs(600));
    assert_eq!(p.header_timeout, Duration::from_secs(60));
    assert_eq!(p.first_token_timeout, Duration::from_secs(60));
    assert_eq!(p.idle_timeout, Duration::from_secs(30));
    assert!(!p.retry_first_token_timeout);
    assert_eq!(p.scenario, None);

    let r = &c.routes[0];
    assert_eq!(
        r.on_refusal,
        OnRefusal::Return,
        "a refusal is returned by default"
    );
    assert_eq!(r.continue_on, ContinueOn::Next);
    assert_eq!(r.deadline, None);
    assert_eq!(r.degrade, None);
    assert_eq!(r.budget, None);
    let t = &r.targets[0];
    assert_eq!(t, &RouteTarget::new("openai", "gpt-4o"));
    assert_eq!(t.price, None);
    assert_eq!(t.context_window, None);
    assert!(!t.accepts_prefill);
    assert_eq!(t.retry.max_retries, 2);
    assert_eq!(t.retry.base_delay, Duration::from_millis(500));
    assert_eq!(t.retry.max_delay, Duration::from_millis(8000));
    // The breaker's own defaults: short breaks that grow, with jitter, and
    // one probe that closes it.
    assert_eq!(t.breaker.consecutive_failures, 5);
    assert_eq!(t.breaker.break_duration, Duration::from_secs(5));
    assert_eq!(t.breaker.break_growth, 2.0);
    assert_eq!(t.breaker.max_break_duration, None);
    assert_eq!(t.breaker.max_break(), Duration::from_secs(15));
    assert_eq!(t.breaker.break_jitter, 0.2);
    assert_eq!(t.breaker.half_open_probes, 1);
    assert_eq!(t.breaker.success_threshold, 1);
    // Unset: the operation's own, 30 s for chat and 10 s for embeddings.
    assert_eq!(t.attempt_timeout, None);
    assert_eq!(
        t.attempt_timeout_for(staunch::core::Operation::Chat),
        Duration::from_secs(30)
    );
    assert_eq!(
        t.attempt_timeout_for(staunch::core::Operation::Embeddings),
        Duration::from_secs(10)
    );
    assert_eq!(t.embedding_space, None);
    assert!(!t.retry_attempt_timeouts);
    assert_eq!(t.quota, None);

    assert!(c.client_keys.is_empty());
    assert!(!c.auth_required());
    assert_eq!(c.validate(), Ok(()));
}

const FULL: &str = r#"
[server]
listen = "0.0.0.0:9000"
max_body_bytes = 1024
max_concurrency = 8
shutdown_grace_secs = 2.5
max_connections = 500
header_timeout_secs = 1.5
idle_timeout_secs = 20
body_timeout_secs = 4
min_body_bytes_per_sec = 512
log_format = "text"

[providers.oai]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
headers = { OpenAI-Organization = "org-1", x-extra = "yes" }
connect_timeout_secs = 1
request_timeout_secs = 2
header_timeout_secs = 5
first_token_timeout_secs = 3
idle_timeout_secs = 4
retry_first_token_timeout = true

[providers.ant]
kind = "anthropic"

[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:8000/v1"

[providers.mock]
kind = "mock"
scenario = "chaos.toml"

[[routes]]
model = "gpt-*"
on_refusal = "fallback"
continue_on = "same"
deadline_secs = 90
degrade = { static_answer = "sorry", cache_ttl_secs = 300, cache_capacity = 50 }
budget = { per_request_tokens = 4000 }

[[routes.targets]]
provider = "oai"
model = "gpt-4o"
price = { input = 2.5, output = 10 }
context_window = 128000
accepts_prefill = true
retry = { max_retries = 4, base_delay_ms = 100, max_delay_ms = 1000 }
breaker = { consecutive_failures = 3, break_secs = 10, break_growth = 1.5, max_break_secs = 90, break_jitter = 0, half_open_probes = 2, success_threshold = 2 }
attempt_timeout_secs = 20
retry_attempt_timeouts = true
quota = { requests_per_minute = 60, tokens_per_minute = 10000, max_wait_ms = 250 }

[[routes.targets]]
provider = "ant"
model = "claude-sonnet-4-5"
quota = { tokens_per_minute = 5000 }

[[routes]]
model = "*"
targets = [{ provider = "local", model = "llama" }, { provider = "mock", model = "m" }]

[[client_keys]]
name = "ci"
sha256 = "E2186DBDB1BB4193608605E84F33208765B5693B55EDD4F730A719A100EEEA6F"
window_secs = 3600
window_tokens = 100000
window_cost = 1.5

[[client_keys]]
name = "dev"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn full_expected() -> Config {
    let oai = Provider {
        base_url: Some("https://api.openai.com/v1".into()),
        api_key_env: Some("OPENAI_API_KEY".into()),
        headers: BTreeMap::from([
            ("OpenAI-Organization".into(), "org-1".into()),
            ("x-extra".into(), "yes".into()),
        ]),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        header_timeout: Duration::from_secs(5),
        first_token_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(4),
        retry_first_token_timeout: true,
        ..Provider::new(ProviderKind::OpenAi)
    };
    let local = Provider {
        base_url: Some("http://127.0.0.1:8000/v1".into()),
        ..Provider::new(ProviderKind::OpenAiCompatible)
    };
    let mock = Provider {
        scenario: Some("chaos.toml".into()),
        ..Provider::new(ProviderKind::Mock)
    };
    Config {
        server: Server {
            listen: "0.0.0.0:9000".parse().unwrap(),
            max_body_bytes: 1024,
            max_concurrency: 8,
            shutdown_grace: Duration::from_millis(2500),
            max_connections: Some(500),
            header_timeout: Duration::from_millis(1500),
            idle_timeout: Duration::from_secs(20),
            body_timeout: Duration::from_secs(4),
            min_body_rate: 512,
            log_format: LogFormat::Text,
        },
        providers: BTreeMap::from([
            ("oai".into(), oai),
            ("ant".into(), Provider::new(ProviderKind::Anthropic)),
            ("local".into(), local),
            ("mock".into(), mock),
        ]),
        routes: vec![
            Route {
                on_refusal: OnRefusal::Fallback,
                continue_on: ContinueOn::Same,
                deadline: Some(Duration::from_secs(90)),
                degrade: Some(Degrade {
                    static_answer: Some("sorry".into()),
                    cache_ttl: Some(Duration::from_secs(300)),
                    cache_capacity: 50,
                }),
                budget: Some(RouteBudget {
                    per_request_tokens: Some(4000),
                }),
                ..Route::new(
                    "gpt-*",
                    vec![
                        RouteTarget {
                            price: Some(Price {
                                input: 2.5,
                                output: 10.0,
                            }),
                            context_window: Some(128000),
                            accepts_prefill: true,
                            retry: Retry {
                                max_retries: 4,
                                base_delay: Duration::from_millis(100),
                                max_delay: Duration::from_millis(1000),
                            },
                            breaker: Breaker {
                                consecutive_failures: 3,
                                break_duration: Duration::from_secs(10),
                                break_growth: 1.5,
                                max_break_duration: Some(Duration::from_secs(90)),
                                break_jitter: 0.0,
                                half_open_probes: 2,
                                success_threshold: 2,
                            },
                            attempt_timeout: Some(Duration::from_secs(20)),
                            retry_attempt_timeouts: true,
                            quota: Some(Quota {
                                requests_per_minute: Some(60),
                                tokens_per_minute: Some(10000),
                                max_wait: Duration::from_millis(250),
                            }),
                            ..RouteTarget::new("oai", "gpt-4o")
                        },
                        RouteTarget {
                            // max_wait_ms defaults to 10 s.
                            quota: Some(Quota {
                                tokens_per_minute: Some(5000),
                                ..Quota::default()
                            }),
                            ..RouteTarget::new("ant", "claude-sonnet-4-5")
                        },
                    ],
                )
            },
            Route::new(
                "*",
                vec![
                    RouteTarget::new("local", "llama"),
                    RouteTarget::new("mock", "m"),
                ],
            ),
        ],
        client_keys: vec![
            ClientKey {
                name: "ci".into(),
                // Stored in lower case.
                sha256: KEY_HASH.into(),
                window: Duration::from_secs(3600),
                window_tokens: Some(100000),
                window_cost: Some(1.5),
            },
            ClientKey {
                name: "dev".into(),
                sha256: "0".repeat(64),
                window: Duration::from_secs(60),
                window_tokens: None,
                window_cost: None,
            },
        ],
        telemetry: Telemetry::default(),
        shared: Default::default(),
    }
}

#[test]
fn full_config_reads_every_field() {
    let c = Config::parse(FULL, "gw.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c, full_expected());
    assert!(c.auth_required());
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn config_serializes_back_to_the_same_config() {
    let c = Config::parse(FULL, "gw.toml").unwrap();
    let text = toml::to_string(&c).unwrap();
    let again = Config::parse(&text, "serialized").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again, c);
}

#[test]
fn route_for_takes_the_first_match() {
    let c = Config::parse(FULL, "gw.toml").unwrap();
    assert_eq!(c.route_for("gpt-4o").unwrap().model, "gpt-*");
    assert_eq!(c.route_for("claude-3").unwrap().model, "*");
    assert_eq!(c.route_for("").unwrap().model, "*");
}

#[test]
fn matches_with_patterns() {
    let r = |p: &str| Route::new(p, vec![]);
    assert!(r("gpt-4o").matches("gpt-4o"));
    assert!(!r("gpt-4o").matches("gpt-4o-mini"));
    assert!(!r("gpt-4o").matches("gpt-4"));
    assert!(r("*").matches(""));
    assert!(r("*").matches("anything"));
    assert!(r("gpt-*").matches("gpt-"));
    assert!(r("gpt-*").matches("gpt-4o-mini"));
    assert!(!r("gpt-*").matches("xgpt-4o"));
    assert!(r("*-mini").matches("gpt-4o-mini"));
    assert!(!r("*-mini").matches("gpt-4o-mini-2024"));
    assert!(r("claude-*-sonnet-*").matches("claude-3-5-sonnet-latest"));
    assert!(!r("claude-*-sonnet-*").matches("claude-3-5-haiku-latest"));
    assert!(r("a*a").matches("aa"));
    assert!(!r("a*a").matches("a"));
    assert!(r("a**b").matches("ab"));
    assert!(r("*o*").matches("gpt-4o"));
    assert!(!r("").matches("x"));
    assert!(r("").matches(""));
    // Matching is case-sensitive.
    assert!(!r("GPT-*").matches("gpt-4o"));
}

#[test]
fn mock_config_is_valid() {
    let c = Config::mock();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.providers["mock"].kind, ProviderKind::Mock);
    let route = c.route_for("any-model").unwrap();
    assert_eq!(route.targets.len(), 2);
    // Embedding models have a route of their own: the mock's vectors
    // depend on the model, so `*`'s two targets are two vector spaces.
    let embed = c.route_for("text-embedding-3-small").unwrap();
    assert_eq!(embed.targets, [RouteTarget::new("mock", "mock-embedding")]);
    assert!(route.targets.iter().all(|t| t.provider == "mock"));
    assert!(!c.auth_required());
    // And the same config written as a file.
    let text = toml::to_string(&c).unwrap();
    assert_eq!(Config::parse(&text, "mock").unwrap(), c);
}

#[test]
fn example_file_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.server, Server::default());
    assert_eq!(c.providers.len(), 4);
    assert_eq!(c.routes.len(), 5);
    assert_eq!(c.routes[0].targets.len(), 3);
    // The route of one model on two deployments.
    let pooled = c.route_for("o3").unwrap();
    assert!(pooled.coalesce);
    let providers: Vec<&str> = pooled.targets[0].providers().collect();
    assert_eq!(providers, ["openai", "local"]);
    assert_eq!(pooled.targets[0].deployments[0].weight, 3);
    assert_eq!(
        pooled.targets[0].hedge.map(|h| h.after),
        Some(HedgeAfter::P95)
    );
    assert_eq!(c.client_keys[0].sha256, KEY_HASH);
    assert_eq!(c.route_for("gpt-4o-mini").unwrap().model, "gpt-*");
    assert_eq!(c.route_for("claude-opus").unwrap().model, "claude-*");
    assert_eq!(c.route_for("llama").unwrap().model, "*");
    let embed = c.route_for("text-embedding-3-small").unwrap();
    assert_eq!(
        embed.targets[1].embedding_space.as_deref(),
        Some("text-embedding-3-small")
    );
    assert_eq!(embed.targets[1].embedding_space(), embed.targets[0].model);
    assert_eq!(
        c.routes[0].targets[0].quota,
        Some(Quota {
            requests_per_minute: Some(500),
            tokens_per_minute: Some(30000),
            max_wait: Duration::from_secs(2),
        })
    );
    assert_eq!(c.routes[0].targets[1].quota, None);
}

#[test]
fn load_names_the_file_and_resolves_the_scenario() {
    let dir = std::env::temp_dir().join(format!("staunch-gateway-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gw.toml");
    std::fs::write(
        &path,
        "[providers.m]\nkind = \"mock\"\nscenario = \"chaos.toml\"\n\n[[routes]]\nmodel = \"*\"\ntargets = [{ provider = \"m\", model = \"x\" }]\n",
    )
    .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.providers["m"].scenario, Some(dir.join("chaos.toml")));

    std::fs::write(&path, "[server]\nlisten = 1\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2: server.listen: ", path.display())),
        "{e}"
    );

    let missing = dir.join("missing.toml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].line, None);
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the configuration",
            missing.display()
        )),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn display_names_origin_line_and_field() {
    let e = ConfigError {
        origin: "gw.toml".into(),
        line: Some(7),
        field: "routes[0].model".into(),
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "gw.toml:7: routes[0].model: bad");
    let e = ConfigError { line: None, ..e };
    assert_eq!(e.to_string(), "gw.toml: routes[0].model: bad");
    let two = ConfigErrors(vec![e.clone(), e]);
    assert_eq!(
        two.to_string(),
        "gw.toml: routes[0].model: bad\ngw.toml: routes[0].model: bad"
    );
}

#[test]
fn unknown_field_typo() {
    let e = error(&format!(
        "{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1\"\nmax_concurency = 4\n"
    ));
    assert_eq!(e.line, Some(11));
    assert_eq!(e.field, "server.max_concurency");
    assert!(e.message.contains("unknown field `max_concurency`"), "{e}");
    assert!(e.message.contains("`max_concurrency`"), "{e}");
    assert!(
        e.to_string()
            .starts_with("gw.toml:11: server.max_concurency: unknown field"),
        "{e}"
    );

    // In a target, in an inline table.
    let e = error(
        r#"
[providers.openai]
kind = "openai"

[[routes]]
model = "*"
targets = [{ provider = "openai", model = "gpt-4o", retry = { max_retrys = 1 } }]
"#,
    );
    assert_eq!(e.line, Some(7));
    assert_eq!(e.field, "routes[0].targets[0].retry.max_retrys");

    // At the top level.
    let e = error(&format!("rotes = []\n{MINIMAL}"));
    assert_eq!((e.line, e.field.as_str()), (Some(1), "rotes"));
    assert!(e.message.contains("`routes`"), "{e}");
}

#[test]
fn wrong_type() {
    let e = error(&format!("{MINIMAL}\n[server]\nmax_body_bytes = \"2MiB\"\n"));
    assert_eq!(e.line, Some(10));
    assert_eq!(e.field, "server.max_body_bytes");
    assert!(e.message.contains("invalid type: string \"2MiB\""), "{e}");

    let e = error(&format!("{MINIMAL}\n[server]\nlisten = \"localhost\"\n"));
    assert_eq!((e.line, e.field.as_str()), (Some(10), "server.listen"));

    let e = error(&format!("{MINIMAL}\n[server]\nlog_format = \"xml\"\n"));
    assert_eq!((e.line, e.field.as_str()), (Some(10), "server.log_format"));
    assert!(e.message.contains("unknown variant `xml`"), "{e}");

    let e = error(&format!("{MINIMAL}\n[providers.x]\nkind = \"opnai\"\n"));
    assert_eq!((e.line, e.field.as_str()), (Some(10), "providers.x.kind"));
    assert!(e.message.contains("`openai-compatible`"), "{e}");

    let e = error("routes = 3\n");
    assert_eq!((e.line, e.field.as_str()), (Some(1), "routes"));
    assert!(e.message.contains("array"), "{e}");

    let e = error(&format!(
        "{MINIMAL}\n[[client_keys]]\nname = \"a\"\nsha256 = \"{KEY_HASH}\"\nwindow_secs = -1\n"
    ));
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(12), "client_keys[0].window_secs")
    );
}

#[test]
fn missing_required_field_names_its_table() {
    let e = error(
        r#"
[providers.openai]
kind = "openai"

[[routes]]
model = "*"

[[routes.targets]]
provider = "openai"
"#,
    );
    assert_eq!(e.field, "routes[0].targets[0]");
    assert_eq!(e.line, Some(8));
    assert!(e.message.contains("missing field `model`"), "{e}");
}

#[test]
fn unknown_provider_lists_the_known_ones() {
    let e = error(
        r#"
[providers.openai]
kind = "openai"

[providers.anthropic]
kind = "anthropic"

[[routes]]
model = "*"
targets = [
  { provider = "openai", model = "gpt-4o" },
  { provider = "opnai", model = "gpt-4o-mini" },
]
"#,
    );
    assert_eq!(e.line, Some(12));
    assert_eq!(e.field, "routes[0].targets[1].provider");
    assert_eq!(
        e.message,
        "unknown provider \"opnai\"; known providers: anthropic, openai"
    );

    let e = error("[[routes]]\nmodel = \"*\"\ntargets = [{ provider = \"x\", model = \"m\" }]\n");
    assert_eq!(e.field, "routes[0].targets[0].provider");
    assert!(e.message.contains("no providers are defined"), "{e}");
}

#[test]
fn openai_compatible_needs_base_url() {
    let e = error(&format!(
        "{MINIMAL}\n[providers.local]\nkind = \"openai-compatible\"\n"
    ));
    assert_eq!(e.line, Some(9), "the provider's header line: {e}");
    assert_eq!(e.field, "providers.local.base_url");
    assert!(e.message.contains("needs base_url"), "{e}");

    let e = error(&format!(
        "{MINIMAL}\n[providers.local]\nkind = \"openai-compatible\"\nbase_url = \"localhost:8000\"\n"
    ));
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(11), "providers.local.base_url")
    );
}

#[test]
fn bad_sha256() {
    let text = format!(
        "{MINIMAL}\n[[client_keys]]\nname = \"a\"\nsha256 = \"abc123\"\n\n[[client_keys]]\nname = \"b\"\nsha256 = \"{}\"\n",
        "z".repeat(64)
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(e[0].field, "client_keys[0].sha256");
    assert_eq!(e[0].line, Some(11));
    assert!(e[0].message.contains("64 hex digits"), "{}", e[0]);
    assert_eq!(e[1].field, "client_keys[1].sha256");
    assert_eq!(e[1].line, Some(15));
}

#[test]
fn duplicate_client_keys() {
    let text = format!(
        "{MINIMAL}\n[[client_keys]]\nname = \"a\"\nsha256 = \"{KEY_HASH}\"\n\n[[client_keys]]\nname = \"a\"\nsha256 = \"{}\"\n",
        KEY_HASH.to_uppercase()
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    let name = find(&e, "client_keys[1].name");
    assert_eq!(name.line, Some(14));
    assert!(
        name.message.contains("duplicate client key name \"a\""),
        "{name}"
    );
    assert!(
        find(&e, "client_keys[1].sha256")
            .message
            .contains("same key")
    );
}

#[test]
fn public_listen_without_keys_is_refused() {
    let e = error(&format!("{MINIMAL}\n[server]\nlisten = \"0.0.0.0:8080\"\n"));
    assert_eq!((e.line, e.field.as_str()), (Some(10), "server.listen"));
    assert!(
        e.message
            .starts_with("refusing to serve without client keys on a public address"),
        "{e}"
    );

    // With a key it is allowed, and auth is required.
    let c = Config::parse(
        &format!("{MINIMAL}\n[server]\nlisten = \"[::]:8080\"\n\n[[client_keys]]\nname = \"a\"\nsha256 = \"{KEY_HASH}\"\n"),
        "gw.toml",
    )
    .unwrap();
    assert!(c.auth_required());

    // Loopback v6 without keys is fine.
    let c = Config::parse(
        &format!("{MINIMAL}\n[server]\nlisten = \"[::1]:8080\"\n"),
        "gw.toml",
    )
    .unwrap();
    assert!(!c.auth_required());
}

#[test]
fn connection_bounds_that_bound_nothing_are_refused() {
    let e = errors(&format!(
        "{MINIMAL}\n[server]\nmax_connections = 0\nheader_timeout_secs = 0\n\
         idle_timeout_secs = 7200\nbody_timeout_secs = 0.001\nmin_body_bytes_per_sec = 0\n"
    ));
    assert_eq!(e.len(), 5, "{e:#?}");
    assert_eq!(find(&e, "server.max_connections").line, Some(10));
    assert!(
        find(&e, "server.header_timeout_secs")
            .message
            .contains("between 0.01 and 3600 seconds (got 0)")
    );
    assert!(
        find(&e, "server.idle_timeout_secs")
            .message
            .contains("(got 7200)")
    );
    find(&e, "server.body_timeout_secs");
    assert!(
        find(&e, "server.min_body_bytes_per_sec")
            .message
            .contains("greater than 0")
    );
    // A negative duration is not a number of seconds at all.
    let e = error(&format!("{MINIMAL}\n[server]\nheader_timeout_secs = -1\n"));
    assert_eq!(e.field, "server.header_timeout_secs");
}

#[test]
fn empty_routes() {
    let e = error("[providers.openai]\nkind = \"openai\"\n");
    assert_eq!((e.line, e.field.as_str()), (None, "routes"));
    assert!(e.message.starts_with("no routes"), "{e}");
    assert_eq!(e.to_string(), format!("gw.toml: routes: {}", e.message));

    let e = error("routes = []\n[providers.openai]\nkind = \"openai\"\n");
    assert_eq!((e.line, e.field.as_str()), (Some(1), "routes"));

    let e = error("[providers.openai]\nkind = \"openai\"\n\n[[routes]]\nmodel = \"*\"\n");
    assert_eq!((e.line, e.field.as_str()), (Some(4), "routes[0].targets"));
    assert!(e.message.contains("at least one target"), "{e}");
}

#[test]
fn bad_route_models() {
    let text = r#"
[providers.p]
kind = "mock"

[[routes]]
model = "gpt-4o"
targets = [{ provider = "p", model = "a" }]

[[routes]]
model = ""
targets = [{ provider = "p", model = "a" }]

[[routes]]
model = "gpt-*"
targets = [{ provider = "p", model = "a" }]

[[routes]]
model = "gpt-4o"
targets = [{ provider = "p", model = "a" }]

[[routes]]
model = "gpt-4o-mini"
targets = [{ provider = "p", model = "a" }]
"#;
    let e = errors(text);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!(e[0].field, "routes[1].model");
    assert_eq!(e[0].line, Some(10));
    assert!(e[0].message.contains("empty model pattern"), "{}", e[0]);
    assert_eq!(e[1].field, "routes[3].model");
    assert_eq!(e[1].line, Some(18));
    assert_eq!(
        e[1].message,
        "duplicate route for model \"gpt-4o\" (first at routes[0], line 6)"
    );
    assert_eq!(e[2].field, "routes[4].model");
    assert!(
        e[2].message
            .starts_with("unreachable route: routes[2], line 14"),
        "{}",
        e[2]
    );
}

#[test]
fn toml_syntax_error() {
    let e = error(&format!("{MINIMAL}\n[server\nlisten = \"127.0.0.1:1\"\n"));
    assert_eq!(e.line, Some(9));
    assert!(e.message.starts_with("invalid TOML"), "{e}");
    assert!(e.to_string().starts_with("gw.toml:9: "), "{e}");

    let e = error(&format!("{MINIMAL}\n[server]\nmax_concurrency = 12abc\n"));
    assert_eq!(e.line, Some(10));
    assert_eq!(e.field, "server.max_concurrency");

    let e = error("[[routes]]\nmodel = \"unterminated\n");
    assert_eq!(e.line, Some(2));
}

#[test]
fn out_of_range_values() {
    let text = r#"
[server]
max_body_bytes = 0
max_concurrency = 0

[providers.p]
kind = "openai"
api_key_env = ""
headers = { "bad header" = "x" }
idle_timeout_secs = 0

[[routes]]
model = "*"
deadline_secs = 0
degrade = {}
budget = { per_request_tokens = 0 }

[[routes.targets]]
provider = "p"
model = ""
price = { input = -1, output = 1 }
context_window = 0
retry = { base_delay_ms = 9000 }
breaker = { consecutive_failures = 0, break_secs = 0 }
attempt_timeout_secs = 0
"#;
    let e = errors(text);
    for field in [
        "server.max_body_bytes",
        "server.max_concurrency",
        "providers.p.api_key_env",
        "providers.p.headers.\"bad header\"",
        "providers.p.idle_timeout_secs",
        "routes[0].deadline_secs",
        "routes[0].degrade",
        "routes[0].budget.per_request_tokens",
        "routes[0].targets[0].model",
        "routes[0].targets[0].price.input",
        "routes[0].targets[0].context_window",
        "routes[0].targets[0].retry.base_delay_ms",
        "routes[0].targets[0].breaker.consecutive_failures",
        "routes[0].targets[0].breaker.break_secs",
        "routes[0].targets[0].attempt_timeout_secs",
    ] {
        assert!(find(&e, field).line.is_some(), "{field}: {e:#?}");
    }
    assert_eq!(e.len(), 15, "{e:#?}");
    // In the file's order.
    let lines: Vec<usize> = e.iter().map(|e| e.line.unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn several_errors_are_all_reported() {
    let text = r#"
[server]
max_body_bytes = "big"

[providers.openai]
kind = "openai"

[providers.local]
kind = "openai-compatible"

[providers.broken]
kind = "openai"
timeout = 3

[[routes]]
model = "gpt-*"
targets = [
  { provider = "openai", model = "gpt-4o" },
  { provider = "opnai", model = "gpt-4o-mini" },
]

[[routes]]
model = "claude-*"
[[routes.targets]]
provder = "openai"
model = "m"

[[routes]]
model = "*"
targets = [{ provider = "broken", model = "m" }, { provider = "nope", model = "m" }]
"#;
    let e = errors(text);
    let got: Vec<(Option<usize>, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (Some(3), "server.max_body_bytes"),
            (Some(8), "providers.local.base_url"),
            (Some(13), "providers.broken.timeout"),
            (Some(19), "routes[0].targets[1].provider"),
            (Some(25), "routes[1].targets[0].provder"),
            // routes[1] failed, routes[2] keeps its index, and "broken" is
            // a known provider even though its table has an error.
            (Some(30), "routes[2].targets[1].provider"),
        ],
        "{e:#?}"
    );
    let all = ConfigErrors(e).to_string();
    assert_eq!(all.lines().count(), 6);
    assert!(all.lines().all(|l| l.starts_with("gw.toml:")), "{all}");
}

#[test]
fn validate_checks_configs_built_in_code() {
    let mut c = Config::mock();
    c.routes[1].targets.push(RouteTarget::new("nowhere", "m"));
    c.server.listen = "0.0.0.0:80".parse().unwrap();
    let e = c.validate().unwrap_err();
    assert_eq!(e.0.len(), 2, "{e}");
    assert!(
        e.0.iter()
            .all(|e| e.origin == "<config>" && e.line.is_none())
    );
    assert!(e.to_string().contains("<config>: routes[1].targets[2].provider: unknown provider \"nowhere\"; known providers: mock"), "{e}");
}

#[test]
fn quota_limits_must_be_positive_and_name_their_line() {
    let text = r#"
[providers.p]
kind = "openai"

[[routes]]
model = "*"

[[routes.targets]]
provider = "p"
model = "a"
quota = { requests_per_minute = 0, tokens_per_minute = 1000 }

[[routes.targets]]
provider = "p"
model = "b"
quota = { max_wait_ms = 500 }

[[routes.targets]]
provider = "p"
model = "c"
quota = { requests_per_minute = 10, tokens_per_minute = 0, max_wait_ms = 0 }
"#;
    let e = errors(text);
    let got: Vec<(Option<usize>, &str)> = e.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (Some(11), "routes[0].targets[0].quota.requests_per_minute"),
            (Some(16), "routes[0].targets[1].quota"),
            (Some(21), "routes[0].targets[2].quota.tokens_per_minute"),
        ],
        "{e:#?}"
    );
    assert_eq!(
        e[0].to_string(),
        "gw.toml:11: routes[0].targets[0].quota.requests_per_minute: must be greater than 0 (leave it out for no limit)"
    );
    assert!(
        e[1].message
            .contains("requests_per_minute or tokens_per_minute"),
        "{e:#?}"
    );
    // A max_wait_ms of 0 is allowed: it never waits.
    let ok = text
        .replace("requests_per_minute = 0,", "requests_per_minute = 5,")
        .replace(
            "{ max_wait_ms = 500 }",
            "{ requests_per_minute = 1, max_wait_ms = 500 }",
        )
        .replace("tokens_per_minute = 0,", "tokens_per_minute = 1,");
    let c = Config::parse(&ok, "gw.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.routes[0].targets[2].quota.unwrap().max_wait,
        Duration::ZERO
    );
}

#[test]
fn quota_typos_and_wrong_types_name_their_line() {
    let e = error(
        r#"
[providers.p]
kind = "openai"

[[routes]]
model = "*"
targets = [
  { provider = "p", model = "a", quota = { request_per_minute = 5 } },
]
"#,
    );
    assert_eq!(e.line, Some(8), "{e:#?}");
    assert_eq!(e.field, "routes[0].targets[0].quota.request_per_minute");
    assert!(e.message.contains("unknown field"), "{e:#?}");

    let e = error(
        r#"
[providers.p]
kind = "openai"

[[routes]]
model = "*"

[[routes.targets]]
provider = "p"
model = "a"
quota = { requests_per_minute = -3 }
"#,
    );
    assert_eq!(e.line, Some(11), "{e:#?}");
    assert_eq!(e.field, "routes[0].targets[0].quota.requests_per_minute");
}

#[test]
fn validate_checks_quotas_built_in_code() {
    let mut c = Config::mock();
    c.routes[0].targets[0].quota = Some(Quota {
        requests_per_minute: Some(0),
        ..Quota::default()
    });
    let e = c.validate().unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(
        e.0[0].field,
        "routes[0].targets[0].quota.requests_per_minute"
    );
}

/// The quota is put to work: a target at its requests per minute is
/// passed over (without waiting, with `max_wait_ms = 0`) and the next
/// target answers.
#[tokio::test]
async fn a_target_at_its_quota_hands_over_to_the_next() {
    use tower::ServiceExt;
    let mock = staunch_mock::MockServer::start(staunch_mock::Scenario::default())
        .await
        .unwrap();
    let text = format!(
        r#"
[providers.m]
kind = "openai-compatible"
base_url = "{}"

[[routes]]
model = "*"
targets = [
  {{ provider = "m", model = "primary", quota = {{ requests_per_minute = 2, max_wait_ms = 0 }} }},
  {{ provider = "m", model = "spare" }},
]
"#,
        mock.openai_base_url()
    );
    let config = Config::parse(&text, "gw.toml").unwrap_or_else(|e| panic!("{e}"));
    let app = staunch_gateway::router(staunch_gateway::Gateway::build(config).await.unwrap());
    let mut answered_by = Vec::new();
    for _ in 0..4 {
        let request = http::Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                r#"{"model":"any","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#,
            ))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        answered_by.push(
            response.headers()["x-staunch-target"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        answered_by,
        ["m/primary", "m/primary", "m/spare", "m/spare"]
    );
}

/// Every route and target written out, as a config without `[defaults]`
/// has to.
const WRITTEN_OUT: &str = r#"
[providers.oai]
kind = "openai"

[providers.ant]
kind = "anthropic"

[[routes]]
model = "gpt-*"
continue_on = "next"
deadline_secs = 120
degrade = { static_answer = "sorry", cache_capacity = 10 }
  [[routes.targets]]
  provider = "oai"
  model = "gpt-4o"
  accepts_prefill = true
  attempt_timeout_secs = 30
  retry = { max_retries = 3, base_delay_ms = 100, max_delay_ms = 1000 }
  breaker = { consecutive_failures = 3, break_secs = 2, break_jitter = 0 }
  [[routes.targets]]
  provider = "ant"
  model = "claude-sonnet-4-5"
  accepts_prefill = false
  attempt_timeout_secs = 30
  retry = { max_retries = 0, base_delay_ms = 100, max_delay_ms = 1000 }
  breaker = { consecutive_failures = 3, break_secs = 2, break_jitter = 0 }

[[routes]]
model = "claude-*"
continue_on = "same"
deadline_secs = 120
degrade = { static_answer = "sorry", cache_capacity = 10 }
targets = [
  { provider = "ant", model = "claude-sonnet-4-5", accepts_prefill = true, attempt_timeout_secs = 30, retry = { max_retries = 1, base_delay_ms = 100, max_delay_ms = 1000 }, breaker = { consecutive_failures = 3, break_secs = 2, break_jitter = 0 } },
]

[[routes]]
model = "*"
deadline_secs = 10
degrade = { static_answer = "later", cache_capacity = 10 }
targets = [
  { provider = "oai", model = "gpt-4o-mini", accepts_prefill = true, attempt_timeout_secs = 30, retry = { max_retries = 1, base_delay_ms = 100, max_delay_ms = 1000 }, breaker = { consecutive_failures = 3, break_secs = 2, break_jitter = 0 } },
]
"#;

/// The same, naming only what differs from `[defaults]`.
const WITH_DEFAULTS: &str = r#"
[providers.oai]
kind = "openai"

[providers.ant]
kind = "anthropic"

[defaults.route]
deadline_secs = 120
degrade = { static_answer = "sorry", cache_capacity = 10 }

[defaults.target]
accepts_prefill = true
attempt_timeout_secs = 30
retry = { max_retries = 1, base_delay_ms = 100, max_delay_ms = 1000 }
breaker = { consecutive_failures = 3, break_secs = 2, break_jitter = 0 }

[[routes]]
model = "gpt-*"
  [[routes.targets]]
  provider = "oai"
  model = "gpt-4o"
  retry = { max_retries = 3 }
  [[routes.targets]]
  provider = "ant"
  model = "claude-sonnet-4-5"
  accepts_prefill = false
  retry = { max_retries = 0 }

[[routes]]
model = "claude-*"
continue_on = "same"
targets = [{ provider = "ant", model = "claude-sonnet-4-5" }]

[[routes]]
model = "*"
deadline_secs = 10
degrade = { static_answer = "later" }
targets = [{ provider = "oai", model = "gpt-4o-mini" }]
"#;

#[test]
fn defaults_give_every_route_and_target_what_it_does_not_say() {
    let written = Config::parse(WRITTEN_OUT, "written.toml").unwrap_or_else(|e| panic!("{e}"));
    let short = Config::parse(WITH_DEFAULTS, "short.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(short, written);

    // Key by key, sub-tables too: the target's own `max_retries` wins and
    // the default's delays stay; the route's own settings win.
    let t = &short.routes[0].targets[0];
    assert_eq!(t.retry.max_retries, 3);
    assert_eq!(t.retry.base_delay, Duration::from_millis(100));
    assert_eq!(t.retry.max_delay, Duration::from_millis(1000));
    assert!(!short.routes[0].targets[1].accepts_prefill);
    assert_eq!(short.routes[2].deadline, Some(Duration::from_secs(10)));
    let degrade = short.routes[2].degrade.as_ref().unwrap();
    assert_eq!(degrade.static_answer.as_deref(), Some("later"));
    assert_eq!(degrade.cache_capacity, 10);
    assert_eq!(short.routes[1].continue_on, ContinueOn::Same);
    assert_eq!(short.routes[0].continue_on, ContinueOn::Next);

    // Serialized, the routes are written out in full, and read back the same.
    let text = toml::to_string(&short).unwrap();
    assert!(!text.contains("defaults"), "{text}");
    assert_eq!(Config::parse(&text, "serialized").unwrap(), short);
}

#[test]
fn defaults_may_name_the_provider() {
    let c = Config::parse(
        r#"
[providers.oai]
kind = "openai"
[defaults.target]
provider = "oai"
[[routes]]
model = "*"
targets = [{ model = "gpt-4o" }, { model = "gpt-4o-mini" }]
"#,
        "gw.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let providers: Vec<&str> = c.routes[0]
        .targets
        .iter()
        .map(|t| t.provider.as_str())
        .collect();
    assert_eq!(providers, ["oai", "oai"]);
}

#[test]
fn a_mistake_in_defaults_is_reported_once_at_its_line() {
    // A typo and a wrong type: each once, at its own line, though three
    // targets take the defaults.
    let text = r#"
[providers.oai]
kind = "openai"

[defaults.target]
retry = { max_retires = 3 }
attempt_timeout_secs = "soon"
accepts_prefill = true

[[routes]]
model = "a"
targets = [{ provider = "oai", model = "m" }, { provider = "oai", model = "n" }]

[[routes]]
model = "b"
targets = [{ provider = "oai", model = "m", retry = { max_retries = 1 } }]
"#;
    let e = errors(text);
    assert_eq!(e.len(), 2, "{e:#?}");
    let typo = find(&e, "defaults.target.retry.max_retires");
    assert_eq!(typo.line, Some(6));
    assert!(
        typo.message.contains("unknown field `max_retires`"),
        "{typo}"
    );
    let wrong = find(&e, "defaults.target.attempt_timeout_secs");
    assert_eq!(wrong.line, Some(7));
    assert!(wrong.message.contains("invalid type"), "{wrong}");

    // A value out of range: once, under defaults, not once per target.
    let e = errors(
        r#"
[providers.oai]
kind = "openai"
[defaults.target]
breaker = { consecutive_failures = 0, break_jitter = 1.5 }
[[routes]]
model = "*"
targets = [{ provider = "oai", model = "m" }, { provider = "oai", model = "n" }]
"#,
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    let zero = find(&e, "defaults.target.breaker.consecutive_failures");
    assert_eq!(zero.line, Some(5));
    let jitter = find(&e, "defaults.target.breaker.break_jitter");
    assert_eq!(jitter.line, Some(5));

    // Even with no routes at all; and an unknown provider named by default.
    let e = errors(
        r#"
[providers.oai]
kind = "openai"
[defaults.route]
deadline_secs = 0
on_refusal = "ignore"
[defaults.target]
provider = "opnai"
"#,
    );
    assert_eq!(e.len(), 4, "{e:#?}");
    assert_eq!(find(&e, "defaults.route.deadline_secs").line, Some(5));
    assert_eq!(find(&e, "defaults.route.on_refusal").line, Some(6));
    let provider = find(&e, "defaults.target.provider");
    assert_eq!(provider.line, Some(8));
    assert!(
        provider.message.contains("known providers: oai"),
        "{provider}"
    );
    find(&e, "routes");
}

#[test]
fn a_route_default_cannot_name_the_model_or_the_targets() {
    let e = errors(
        r#"
[providers.oai]
kind = "openai"
[defaults.route]
model = "*"
targets = [{ provider = "oai", model = "m" }]
[[routes]]
model = "a"
targets = [{ provider = "oai", model = "m" }]
"#,
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    let model = find(&e, "defaults.route.model");
    assert_eq!(model.line, Some(5));
    assert!(model.message.contains("cannot have a default"), "{model}");
    assert_eq!(find(&e, "defaults.route.targets").line, Some(6));

    let e = errors("\n[defaults.routes]\ndeadline_secs = 1\n");
    let unknown = find(&e, "defaults.routes");
    assert_eq!(unknown.line, Some(2));
    assert!(
        unknown.message.contains("expected `route` or `target`"),
        "{unknown}"
    );
}

#[test]
fn a_default_completed_by_a_target_is_valid_and_a_bad_mix_is_still_caught() {
    // A quota default without limits is fine when each target sets one.
    let c = Config::parse(
        r#"
[providers.oai]
kind = "openai"
[defaults.target]
quota = { max_wait_ms = 0 }
[[routes]]
model = "*"
targets = [{ provider = "oai", model = "m", quota = { requests_per_minute = 60 } }]
"#,
        "gw.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let quota = c.routes[0].targets[0].quota.unwrap();
    assert_eq!(quota.max_wait, Duration::ZERO);
    assert_eq!(quota.requests_per_minute, Some(60));

    // A default delay larger than a target's own maximum: the target's
    // mistake, at the line of the default it took.
    let e = error(
        r#"
[providers.oai]
kind = "openai"
[defaults.target]
retry = { base_delay_ms = 2000 }
[[routes]]
model = "*"
targets = [{ provider = "oai", model = "m", retry = { max_delay_ms = 1000 } }]
"#,
    );
    assert_eq!(e.field, "routes[0].targets[0].retry.base_delay_ms");
    assert_eq!(e.line, Some(5));
}

#[test]
fn stream_and_breaker_settings_out_of_range_name_their_line() {
    let e = errors(
        r#"
[providers.oai]
kind = "openai"
header_timeout_secs = 0
retry_first_token_timeout = "yes"

[[routes]]
model = "*"
continue_on = "first"
targets = [{ provider = "oai", model = "m" }]

[[routes]]
model = "x"
targets = [
  { provider = "oai", model = "m", retry_attempt_timeouts = 1 },
  { provider = "oai", model = "n", breaker = { break_secs = 10, max_break_secs = 5, break_growth = 0.5, half_open_probes = 0, success_threshold = 0 } },
]
"#,
    );
    // The provider's wrong type hides its other fields (serde stops there).
    let ft = find(&e, "providers.oai.retry_first_token_timeout");
    assert_eq!(ft.line, Some(5));
    let cont = find(&e, "routes[0].continue_on");
    assert_eq!(cont.line, Some(9));
    assert!(cont.message.contains("`next`"), "{cont}");
    // A wrong type in one target hides the route; fixed, the rest shows.
    find(&e, "routes[1].targets[0].retry_attempt_timeouts");

    let text = r#"
[providers.oai]
kind = "openai"
header_timeout_secs = 0

[[routes]]
model = "*"
targets = [
  { provider = "oai", model = "n", breaker = { break_secs = 10, max_break_secs = 5, break_growth = 0.5, half_open_probes = 0, success_threshold = 0 } },
]
"#;
    let e = errors(text);
    assert_eq!(e.len(), 5, "{e:#?}");
    assert_eq!(find(&e, "providers.oai.header_timeout_secs").line, Some(4));
    for field in [
        "max_break_secs",
        "break_growth",
        "half_open_probes",
        "success_threshold",
    ] {
        let err = find(&e, &format!("routes[0].targets[0].breaker.{field}"));
        assert_eq!(err.line, Some(9), "{err}");
    }
}

/// Providers of every kind, for the embedding-space checks.
const EMBEDDING_PROVIDERS: &str = r#"
[providers.openai]
kind = "openai"

[providers.azure]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"

[providers.anthropic]
kind = "anthropic"
"#;

/// A route's embedding targets fall back to each other only within one
/// vector space: the same model, or the same declared `embedding_space`.
#[test]
fn embedding_targets_of_one_space_are_valid() {
    for targets in [
        // One model at two providers.
        r#"[{ provider = "openai", model = "text-embedding-3-small" },
            { provider = "azure", model = "text-embedding-3-small" }]"#,
        // The same model under another name, declared.
        r#"[{ provider = "openai", model = "text-embedding-3-small" },
            { provider = "azure", model = "my-deployment", embedding_space = "text-embedding-3-small" }]"#,
        // Declared on both.
        r#"[{ provider = "openai", model = "text-embedding-3-small", embedding_space = "te3s" },
            { provider = "azure", model = "my-deployment", embedding_space = "te3s" }]"#,
        // Anthropic serves no embeddings: it does not count.
        r#"[{ provider = "openai", model = "text-embedding-3-small", embedding_space = "te3s" },
            { provider = "anthropic", model = "claude-sonnet-4-5" }]"#,
        // Different models without a declaration: a chat route (which
        // then serves no embeddings), not a mistake.
        r#"[{ provider = "openai", model = "gpt-4o" },
            { provider = "azure", model = "llama" }]"#,
    ] {
        let text =
            format!("{EMBEDDING_PROVIDERS}\n[[routes]]\nmodel = \"*\"\ntargets = {targets}\n");
        Config::parse(&text, "gw.toml").unwrap_or_else(|e| panic!("{targets}: {e}"));
    }
}

#[test]
fn embedding_targets_of_two_declared_spaces_are_refused_at_their_line() {
    let text = format!(
        r#"{EMBEDDING_PROVIDERS}
[[routes]]
model = "embed"
targets = [
  {{ provider = "openai", model = "text-embedding-3-small", embedding_space = "openai-small" }},
  {{ provider = "anthropic", model = "claude-sonnet-4-5" }},
  {{ provider = "azure", model = "nomic-embed-text" }},
]
"#
    );
    let e = error(&text);
    assert_eq!(e.field, "routes[0].targets[2].model");
    assert_eq!(e.line, Some(17));
    assert!(
        e.message.contains("targets[0] (openai/text-embedding-3-small) embeds in the space \"openai-small\" and targets[2] (azure/nomic-embed-text) in \"nomic-embed-text\"")
            && e.message.contains("would mix vector spaces"),
        "{e}"
    );

    let both = format!(
        r#"{EMBEDDING_PROVIDERS}
[[routes]]
model = "embed"
targets = [
  {{ provider = "openai", model = "text-embedding-3-small", embedding_space = "small" }},
  {{ provider = "azure", model = "text-embedding-3-large", embedding_space = "large" }},
]
"#
    );
    assert_eq!(error(&both).field, "routes[0].targets[1].embedding_space");
}

#[test]
fn an_embedding_space_needs_a_name_and_a_provider_that_embeds() {
    let text = format!(
        r#"{EMBEDDING_PROVIDERS}
[[routes]]
model = "*"
targets = [
  {{ provider = "openai", model = "m", embedding_space = "" }},
  {{ provider = "anthropic", model = "claude-sonnet-4-5", embedding_space = "m" }},
]
"#
    );
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        find(&e, "routes[0].targets[0].embedding_space")
            .message
            .contains("must name a space")
    );
    assert!(
        find(&e, "routes[0].targets[1].embedding_space")
            .message
            .contains("kind anthropic, which serves no embeddings")
    );
}

#[test]
fn validate_checks_embedding_spaces_built_in_code() {
    let mut c = Config::mock();
    c.routes[0].targets.push(RouteTarget {
        embedding_space: Some("other".into()),
        ..RouteTarget::new("mock", "mock-embedding-2")
    });
    let e = c.validate().unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].field, "routes[0].targets[1].embedding_space");
}

/// The gateway refuses to build what the check would refuse, for a
/// configuration built in code and never validated.
#[tokio::test]
async fn the_build_refuses_two_declared_embedding_spaces() {
    let mut c = Config::mock();
    c.routes[0].targets.push(RouteTarget {
        embedding_space: Some("other".into()),
        ..RouteTarget::new("mock", "mock-embedding-2")
    });
    let e = staunch_gateway::Gateway::build(c).await.unwrap_err();
    assert!(e.to_string().contains("would mix vector spaces"), "{e}");
}
