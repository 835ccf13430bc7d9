//! Reading a configuration: TOML parsed table by table, so that one bad
//! table does not hide the mistakes of the others, then validated.
//!
//! `[defaults.route]` and `[defaults.target]` are merged into every
//! `[[routes]]` table and every target table before either is read, key by
//! key and, for sub-tables (`retry`, `breaker`, `degrade`, ...), recursively:
//! what a route or target writes wins. Each defaults table is also read and
//! checked on its own, so that a mistake there is reported once, at its own
//! line, and only its good keys are merged.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::spans::{Doc, Seg, child, key, line_of, span_of};
use super::validate::{Check, Layout};
use super::{Config, ConfigError, ConfigErrors, Route, RouteTarget, Server};

/// A route's keys that a default cannot give: every route names its own.
const ROUTE_OWN_KEYS: [&str; 2] = ["model", "targets"];

/// The `[defaults]` of a file, read: the keys to merge (those that were
/// read without error) and, for the checks, each table as read on its own.
#[derive(Default)]
struct Defaults<'i> {
    route: DeTable<'i>,
    target: DeTable<'i>,
    /// `[defaults.route]` with a placeholder `model`.
    route_alone: Option<Route>,
    /// `[defaults.target]` with placeholders where it has no `provider` or
    /// `model`, and whether it names a provider.
    target_alone: Option<(RouteTarget, bool)>,
}

impl<'i> Defaults<'i> {
    /// Reads `[defaults]` (absent: no defaults), reporting its mistakes.
    fn read(doc: &Doc<'_>, root: &DeTable<'i>, errors: &mut Vec<ConfigError>) -> Self {
        let mut defaults = Defaults::default();
        let path = vec![Seg::Key("defaults".into())];
        let Some(value) = root.get("defaults") else {
            return defaults;
        };
        let Some(table) = doc.expect_table(value, &path, errors) else {
            return defaults;
        };
        for (entry, value) in table.iter() {
            let name: &str = entry.get_ref();
            let tpath = key(&path, name);
            match name {
                "route" | "target" => {
                    let Some(t) = doc.expect_table(value, &tpath, errors) else {
                        continue;
                    };
                    if name == "route" {
                        let (good, alone) = read_alone::<Route>(doc, t, &tpath, errors, true);
                        defaults.route = good;
                        defaults.route_alone = alone;
                    } else {
                        let names_provider = t.contains_key("provider");
                        let (good, alone) =
                            read_alone::<RouteTarget>(doc, t, &tpath, errors, false);
                        defaults.target = good;
                        defaults.target_alone = alone.map(|t| (t, names_provider));
                    }
                }
                _ => errors.push(doc.error_at(
                    &tpath,
                    Some(entry.span()),
                    format!("unknown field `{name}`, expected `route` or `target`"),
                )),
            }
        }
        defaults
    }

    /// Merges the defaults into every route of `root` and every target of
    /// those routes.
    fn merge_into(&self, root: &mut DeTable<'i>) {
        if self.route.is_empty() && self.target.is_empty() {
            return;
        }
        let Some(routes) = root.get_mut("routes") else {
            return;
        };
        let DeValue::Array(routes) = routes.get_mut() else {
            return;
        };
        for route in routes.iter_mut() {
            let DeValue::Table(route) = route.get_mut() else {
                continue;
            };
            merge(route, &self.route);
            let Some(targets) = route.get_mut("targets") else {
                continue;
            };
            let DeValue::Array(targets) = targets.get_mut() else {
                continue;
            };
            for target in targets.iter_mut() {
                if let DeValue::Table(target) = target.get_mut() {
                    merge(target, &self.target);
                }
            }
        }
    }
}

/// Reads a defaults table on its own, key by key, as a `T` completed with
/// placeholders for its required keys (a route's `model`; a target's
/// `provider` and `model`), so that every bad key is reported once at its
/// line. Returns the keys that read well, and the whole table read with
/// them. For a route, `model` and `targets` are refused.
fn read_alone<'i, T: serde::Deserialize<'i>>(
    doc: &Doc<'_>,
    table: &DeTable<'i>,
    path: &[Seg],
    errors: &mut Vec<ConfigError>,
    route: bool,
) -> (DeTable<'i>, Option<T>) {
    let placeholders: &[&'static str] = if route {
        &["model"]
    } else {
        &["provider", "model"]
    };
    let with_placeholders = |mut t: DeTable<'i>, span: std::ops::Range<usize>| {
        for name in placeholders {
            if !t.contains_key(*name) {
                t.insert(
                    Spanned::new(span.clone(), Cow::Borrowed(*name)),
                    Spanned::new(span.clone(), DeValue::String(Cow::Borrowed("*"))),
                );
            }
        }
        Spanned::new(span, DeValue::Table(t))
    };
    let mut good = DeTable::new();
    for (k, v) in table.iter() {
        let name: &str = k.get_ref();
        if route && ROUTE_OWN_KEYS.contains(&name) {
            errors.push(doc.error_at(
                &key(path, name),
                Some(k.span()),
                format!(
                    "`{name}` cannot have a default: every [[routes]] names its own \
                     `model` and `targets` (put target settings in [defaults.target])"
                ),
            ));
            continue;
        }
        let mut one = DeTable::new();
        one.insert(k.clone(), v.clone());
        let one = with_placeholders(one, k.span());
        if doc.deserialize::<T>(&one, path, errors).is_some() {
            good.insert(k.clone(), v.clone());
        }
    }
    let span = table
        .iter()
        .next()
        .map(|(k, _)| k.span())
        .unwrap_or_default();
    let whole = with_placeholders(good.clone(), span);
    // Each key read well alone, so together they do too; a failure would
    // have been reported by the key that caused it.
    let alone = doc.deserialize::<T>(&whole, path, &mut Vec::new());
    (good, alone)
}

/// Adds to `into` every key of `defaults` it does not have, and merges the
/// sub-tables both have; what `into` has otherwise wins.
fn merge<'i>(into: &mut DeTable<'i>, defaults: &DeTable<'i>) {
    for (k, v) in defaults.iter() {
        let name: &str = k.get_ref();
        match into.get_mut(name) {
            None => {
                into.insert(k.clone(), v.clone());
            }
            Some(mine) => {
                if let (DeValue::Table(mine), DeValue::Table(theirs)) =
                    (mine.get_mut(), v.get_ref())
                {
                    merge(mine, theirs);
                }
            }
        }
    }
}

impl Config {
    /// Parses and validates a configuration. `origin` names it in errors
    /// (the file name). Every error is reported, not just the first.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let doc = Doc { origin, text };
        let mut root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(_) => return Err(ConfigErrors(doc.syntax_errors())),
        };
        let mut errors = Vec::new();
        let defaults = Defaults::read(&doc, root.get_ref(), &mut errors);
        defaults.merge_into(root.get_mut());
        let mut layout = Layout::default();
        let mut config = Config {
            server: Server::default(),
            providers: BTreeMap::new(),
            routes: Vec::new(),
            client_keys: Vec::new(),
            telemetry: Default::default(),
            shared: Default::default(),
        };
        for (key, value) in root.get_ref().iter() {
            let name: &str = key.get_ref();
            let path = vec![Seg::Key(name.to_owned())];
            match name {
                "server" => {
                    if let Some(server) = doc.deserialize(value, &path, &mut errors) {
                        config.server = server;
                    }
                }
                "providers" => {
                    let Some(table) = doc.expect_table(value, &path, &mut errors) else {
                        continue;
                    };
                    for (pname, pvalue) in table.iter() {
                        let pname: &str = pname.get_ref();
                        layout.provider_names.insert(pname.to_owned());
                        let ppath = child(&path, Seg::Key(pname.to_owned()));
                        if let Some(p) = doc.deserialize(pvalue, &ppath, &mut errors) {
                            config.providers.insert(pname.to_owned(), p);
                        }
                    }
                }
                // Read above, and merged into the routes.
                "defaults" => {}
                "telemetry" => {
                    if let Some(telemetry) = doc.deserialize(value, &path, &mut errors) {
                        config.telemetry = telemetry;
                    }
                }
                "shared" => {
                    if let Some(shared) = doc.deserialize(value, &path, &mut errors) {
                        config.shared = shared;
                    }
                }
                "routes" | "client_keys" => {
                    let Some(array) = doc.expect_array(value, &path, &mut errors) else {
                        // Reported; not also as "no routes".
                        layout.file_routes += usize::from(name == "routes");
                        continue;
                    };
                    for (i, item) in array.iter().enumerate() {
                        let ipath = child(&path, Seg::Index(i));
                        if name == "routes" {
                            layout.file_routes += 1;
                            if let Some(r) = doc.deserialize(item, &ipath, &mut errors) {
                                config.routes.push(r);
                                layout.route_index.push(i);
                            }
                        } else if let Some(k) = doc.deserialize(item, &ipath, &mut errors) {
                            config.client_keys.push(k);
                            layout.key_index.push(i);
                        }
                    }
                }
                _ => errors.push(doc.error_at(
                    &path,
                    Some(key.span()),
                    format!(
                        "unknown field `{name}`, expected one of `server`, `providers`, `defaults`, `routes`, `client_keys`, `telemetry`, `shared`"
                    ),
                )),
            }
        }
        for key in &mut config.client_keys {
            key.sha256.make_ascii_lowercase();
        }
        let mut check = Check {
            errors,
            layout,
            locate: &|path: &[Seg]| {
                let span = span_of(root.get_ref(), path)?;
                Some(line_of(text, span.start))
            },
            origin,
            partial: false,
        };
        check.config(&config);
        let routes_end = check.errors.len();
        if let Some(route) = &defaults.route_alone {
            check.defaults_route(route);
        }
        if let Some((target, names_provider)) = &defaults.target_alone {
            check.defaults_target(target, *names_provider);
        }
        // A default's mistake is reported once, at the default, not again
        // for every route or target it was merged into.
        let mut errors = check.errors;
        let from_defaults = errors.split_off(routes_end);
        errors.retain(|e| {
            !(e.field.starts_with("routes")
                && from_defaults
                    .iter()
                    .any(|d| d.line == e.line && d.message == e.message))
        });
        errors.extend(from_defaults);
        if errors.is_empty() {
            Ok(config)
        } else {
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(ConfigErrors(errors))
        }
    }

    /// Reads, parses and validates a configuration file (errors name it by
    /// its path). A mock provider's relative `scenario` path is resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: None,
            field: String::new(),
            message: format!("cannot read the configuration: {e}"),
        })?;
        let mut config = Config::parse(&text, &origin)?;
        if let Some(dir) = path.parent() {
            for provider in config.providers.values_mut() {
                if let Some(scenario) = &mut provider.scenario
                    && scenario.is_relative()
                {
                    *scenario = dir.join(&*scenario);
                }
            }
        }
        Ok(config)
    }

    /// Validates a configuration built in code, with the checks
    /// [`Config::parse`] makes (errors have no line, and their origin is
    /// `<config>`).
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut check = Check {
            errors: Vec::new(),
            layout: Layout {
                provider_names: self.providers.keys().cloned().collect(),
                file_routes: self.routes.len(),
                route_index: (0..self.routes.len()).collect(),
                key_index: (0..self.client_keys.len()).collect(),
            },
            locate: &|_: &[Seg]| None,
            origin: "<config>",
            partial: false,
        };
        check.config(self);
        if check.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(check.errors))
        }
    }
}
