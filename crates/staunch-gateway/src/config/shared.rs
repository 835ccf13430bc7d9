//! The `[shared]` table: the quotas and circuit breakers of several
//! gateway replicas shared through Redis (`staunch-redis`). Off unless
//! `redis_url` is set.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::durations::millis;
use super::spans::{Seg, child, key};
use super::validate::Check;
use super::{Config, Quota};

/// The `[shared]` table.
///
/// With `redis_url` set, every target's `quota = {...}` is kept in Redis
/// for all the replicas that use the same Redis, `prefix` and target
/// (provider and model): they admit together what one gateway would. A
/// replica that cannot reach Redis within `decision_timeout_ms` decides
/// locally at its share of each limit (`limit / replicas`) and shares
/// again when Redis answers. With `share_breakers` (the default) a
/// target's circuit that opens on one replica opens on the others for
/// the time its break has left. Changes take effect on reload.
///
/// `Debug` never prints the password of `redis_url`
/// ([`Shared::redacted_url`]); nor do the configuration's errors.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shared {
    /// The Redis every replica shares (`redis_url`,
    /// `redis://[:password@]host[:port][/db]`). None (the default): each
    /// gateway keeps its quotas and breakers to itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// How many replicas share it (`replicas`, default 1): while Redis is
    /// unreachable each admits `limit / replicas`. Give every replica the
    /// same value.
    pub replicas: u32,
    /// The longest a request waits for Redis' decision before it is made
    /// locally (`decision_timeout_ms`, default 50).
    #[serde(rename = "decision_timeout_ms", with = "millis")]
    pub decision_timeout: Duration,
    /// Requests a replica takes from Redis at once and admits locally
    /// (`lease_requests`; none: one Redis decision per request). The
    /// replicas together may then pass a limit by `replicas × lease`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_requests: Option<u64>,
    /// Tokens a replica takes from Redis at once (`lease_tokens`; none:
    /// none leased).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_tokens: Option<u64>,
    /// Whether circuit openings are shared too (`share_breakers`, default
    /// true).
    pub share_breakers: bool,
    /// The prefix of the keys and channel in Redis (`prefix`, default
    /// `"staunch"`): two fleets on one Redis keep apart with two prefixes.
    pub prefix: String,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            redis_url: None,
            replicas: 1,
            decision_timeout: Duration::from_millis(50),
            lease_requests: None,
            lease_tokens: None,
            share_breakers: true,
            prefix: "staunch".to_owned(),
        }
    }
}

impl Shared {
    /// Whether a Redis is named, so that the replicas share.
    pub fn enabled(&self) -> bool {
        self.redis_url.is_some()
    }

    /// Whether every setting is its default (the table is then not
    /// written when a configuration is serialized).
    pub fn is_default(&self) -> bool {
        *self == Shared::default()
    }

    /// `redis_url` with its password (if any) replaced by `***`, for logs
    /// and errors.
    pub fn redacted_url(&self) -> Option<String> {
        self.redis_url.as_deref().map(redact)
    }

    /// `message` with the password of `redis_url` (if any) replaced by
    /// `***`: for an error from the Redis client, which may quote it.
    pub fn scrub(&self, message: &str) -> String {
        match self.redis_url.as_deref().and_then(password) {
            Some(secret) if !secret.is_empty() => message.replace(secret, "***"),
            _ => message.to_owned(),
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("redis_url", &self.redacted_url())
            .field("replicas", &self.replicas)
            .field("decision_timeout", &self.decision_timeout)
            .field("lease_requests", &self.lease_requests)
            .field("lease_tokens", &self.lease_tokens)
            .field("share_breakers", &self.share_breakers)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The user-information part of a URL (`user:password` before `@`).
fn userinfo(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    Some((start, &rest[..at]))
}

/// The password of a URL: what follows the first `:` of its user
/// information, or all of it when it has no `:` (Redis takes
/// `redis://password@host` too).
fn password(url: &str) -> Option<&str> {
    let (_, info) = userinfo(url)?;
    Some(info.split_once(':').map_or(info, |(_, p)| p))
}

/// `url` with its password replaced by `***`.
fn redact(url: &str) -> String {
    match userinfo(url) {
        Some((start, info)) => {
            let user = info.split_once(':').map_or("", |(u, _)| u);
            format!(
                "{}{user}:***@{}",
                &url[..start],
                &url[start + info.len() + 1..]
            )
        }
        None => url.to_owned(),
    }
}

impl Check<'_> {
    /// The checks of `[shared]`. Nothing here prints the URL: it may hold
    /// a password.
    pub(super) fn shared(&mut self, config: &Config) {
        let s = &config.shared;
        let at = |k: &str| key(&[Seg::Key("shared".into())], k);
        if let Some(url) = &s.redis_url
            && let Some(why) = url_problem(url)
        {
            self.error(at("redis_url"), why);
        }
        if s.replicas == 0 {
            self.error(at("replicas"), "must be at least 1");
        }
        if s.decision_timeout.is_zero() || s.decision_timeout > Duration::from_secs(10) {
            self.error(
                at("decision_timeout_ms"),
                format!(
                    "must be between 1 and 10000 ms (got {}): a request waits this long \
                     for Redis before deciding locally",
                    s.decision_timeout.as_millis()
                ),
            );
        }
        for (name, lease) in [
            ("lease_requests", s.lease_requests),
            ("lease_tokens", s.lease_tokens),
        ] {
            if lease == Some(0) {
                self.error(
                    at(name),
                    "must be greater than 0 (leave it out for no lease)",
                );
            }
        }
        if s.prefix.is_empty()
            || s.prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            self.error(
                at("prefix"),
                "must be a non-empty name without spaces (the prefix of the Redis keys)",
            );
        }
        if s.enabled() {
            self.one_quota_per_target(config);
        }
    }

    /// Shared, a quota belongs to a provider's model, not to one target of
    /// one route: every target of the same provider and model must set the
    /// same quota (or none).
    fn one_quota_per_target(&mut self, config: &Config) {
        let mut first: BTreeMap<(&str, &str), (usize, usize, Option<&Quota>)> = BTreeMap::new();
        let routes = vec![Seg::Key("routes".into())];
        for (ci, route) in config.routes.iter().enumerate() {
            let fi = self.layout.route_index[ci];
            for (ti, t) in route.targets.iter().enumerate() {
                let seen =
                    first
                        .entry((&t.provider, &t.model))
                        .or_insert((fi, ti, t.quota.as_ref()));
                if seen.2 != t.quota.as_ref() && (seen.2.is_some() || t.quota.is_some()) {
                    let (rf, tf) = (seen.0, seen.1);
                    let path = key(
                        &child(
                            &key(&child(&routes, Seg::Index(fi)), "targets"),
                            Seg::Index(ti),
                        ),
                        "quota",
                    );
                    self.error(
                        path,
                        format!(
                            "with [shared] a quota belongs to {}/{} in every route, and \
                             routes[{rf}].targets[{tf}] gives it another; give every target \
                             of this model the same quota",
                            t.provider, t.model
                        ),
                    );
                }
            }
        }
    }
}

/// Why `url` cannot name a Redis, in words that never quote it.
fn url_problem(url: &str) -> Option<&'static str> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Some("not a Redis URL: expected redis://[:password@]host[:port][/db]");
    };
    match scheme {
        "redis" => {}
        "rediss" => {
            return Some(
                "TLS to Redis (rediss://) is not built into the gateway: use redis:// \
                 (on a private network, or through a local TLS tunnel)",
            );
        }
        _ => return Some("not a Redis URL: expected redis://[:password@]host[:port][/db]"),
    }
    // The password may hold any character; the rest must be a URL.
    let without_password = redact(url);
    let Ok(uri) = without_password.parse::<http::Uri>() else {
        return Some("not a Redis URL: expected redis://[:password@]host[:port][/db]");
    };
    let Some(authority) = uri.authority() else {
        return Some("names no host: expected redis://[:password@]host[:port][/db]");
    };
    if authority.host().is_empty() {
        return Some("names no host: expected redis://[:password@]host[:port][/db]");
    }
    if authority.as_str().ends_with(':') {
        return Some("has an empty port: expected redis://[:password@]host[:port][/db]");
    }
    let db = uri.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Some("the path must be a database number (redis://host:6379/0)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn parse(extra: &str) -> Result<Config, Vec<ConfigError>> {
        let text = format!(
            r#"[providers.openai]
kind = "openai"

[[routes]]
model = "gpt-*"
targets = [{{ provider = "openai", model = "gpt-4o", quota = {{ requests_per_minute = 60 }} }}]
{extra}"#
        );
        Config::parse(&text, "gw.toml").map_err(|e| e.0)
    }

    #[test]
    fn off_by_default_and_every_field_read() {
        let c = parse("").unwrap();
        assert!(!c.shared.enabled());
        assert!(c.shared.is_default());
        let c = parse(
            r#"
[shared]
redis_url = "redis://:hunter2-secret@redis.internal:6380/2"
replicas = 3
decision_timeout_ms = 30
lease_requests = 5
lease_tokens = 4000
share_breakers = false
prefix = "gw-eu"
"#,
        )
        .unwrap();
        let s = &c.shared;
        assert!(s.enabled());
        assert_eq!(s.replicas, 3);
        assert_eq!(s.decision_timeout, Duration::from_millis(30));
        assert_eq!((s.lease_requests, s.lease_tokens), (Some(5), Some(4000)));
        assert!(!s.share_breakers);
        assert_eq!(s.prefix, "gw-eu");
        assert_eq!(
            s.redacted_url().as_deref(),
            Some("redis://:***@redis.internal:6380/2")
        );
        let debug = format!("{c:?}");
        assert!(debug.contains("redis.internal"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(
            s.scrub("auth failed for hunter2-secret"),
            "auth failed for ***"
        );
        // Written out and read back, the same.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(Config::parse(&text, "again.toml").unwrap(), c);
    }

    #[test]
    fn redaction_keeps_the_user_and_takes_a_password_alone() {
        assert_eq!(
            redact("redis://default:pw@h:1/0"),
            "redis://default:***@h:1/0"
        );
        assert_eq!(redact("redis://pw@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(password("redis://pw@h"), Some("pw"));
        assert_eq!(password("redis://u:p@ss@h"), Some("p@ss"));
        assert_eq!(redact("redis://u:p@ss@h/1"), "redis://u:***@h/1");
    }

    #[test]
    fn mistakes_name_their_line_and_field_and_never_the_password() {
        let errors = parse(
            r#"
[shared]
redis_url = "http://:sup3r-secret@redis:6379"
replicas = 0
decision_timeout_ms = 0
lease_requests = 0
prefix = "a b"
"#,
        )
        .unwrap_err();
        let find = |field: &str| {
            errors
                .iter()
                .find(|e| e.field == field)
                .unwrap_or_else(|| panic!("no error for {field} in {errors:#?}"))
        };
        assert_eq!(find("shared.redis_url").line, Some(9));
        assert!(find("shared.redis_url").message.contains("redis://"));
        assert_eq!(find("shared.replicas").line, Some(10));
        assert_eq!(find("shared.decision_timeout_ms").line, Some(11));
        assert_eq!(find("shared.lease_requests").line, Some(12));
        assert_eq!(find("shared.prefix").line, Some(13));
        assert_eq!(errors.len(), 5, "{errors:#?}");
        for e in &errors {
            assert!(!e.to_string().contains("sup3r"), "{e}");
        }
        for bad in [
            "redis://:pw-x@",
            "redis://:pw-x@host:/0",
            "redis://:pw-x@host/zero",
            "rediss://:pw-x@host",
            "redis:host",
        ] {
            let errors = parse(&format!("[shared]\nredis_url = \"{bad}\"")).unwrap_err();
            assert_eq!(errors.len(), 1, "{bad}: {errors:#?}");
            assert_eq!(errors[0].field, "shared.redis_url");
            assert!(!errors[0].to_string().contains("pw-x"), "{}", errors[0]);
        }
        let e = parse("[shared]\nredis = \"redis://h\"").unwrap_err();
        assert!(e[0].message.contains("unknown field"), "{}", e[0].message);
    }

    #[test]
    fn a_shared_model_has_one_quota_in_every_route() {
        let text = r#"[providers.openai]
kind = "openai"

[shared]
redis_url = "redis://127.0.0.1:6379"

[[routes]]
model = "gpt-*"
targets = [{ provider = "openai", model = "gpt-4o", quota = { requests_per_minute = 60 } }]

[[routes]]
model = "o*"
targets = [
  { provider = "openai", model = "o3" },
  { provider = "openai", model = "gpt-4o", quota = { requests_per_minute = 90 } },
]
"#;
        let errors = Config::parse(text, "gw.toml").unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].field, "routes[1].targets[1].quota");
        assert_eq!(errors[0].line, Some(15));
        assert!(
            errors[0].message.contains("routes[0].targets[0]"),
            "{errors:#?}"
        );
        // The same quota twice is one quota.
        let same = text.replace("requests_per_minute = 90", "requests_per_minute = 60");
        assert!(Config::parse(&same, "gw.toml").is_ok());
        // Without [shared], each target keeps its own.
        let local = text.replace("redis_url = \"redis://127.0.0.1:6379\"", "");
        assert!(Config::parse(&local, "gw.toml").is_ok());
    }
}
