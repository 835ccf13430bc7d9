//! Reading a configuration: TOML parsed table by table, so that one bad
//! table does not hide the mistakes of the others, then validated.

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::DeTable;

use super::spans::{Doc, Seg, child, line_of, span_of};
use super::validate::{Check, Layout};
use super::{Config, ConfigError, ConfigErrors, Server};

impl Config {
    /// Parses and validates a configuration. `origin` names it in errors
    /// (the file name). Every error is reported, not just the first.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let doc = Doc { origin, text };
        let root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(_) => return Err(ConfigErrors(doc.syntax_errors())),
        };
        let mut errors = Vec::new();
        let mut layout = Layout::default();
        let mut config = Config {
            server: Server::default(),
            providers: BTreeMap::new(),
            routes: Vec::new(),
            client_keys: Vec::new(),
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
                        "unknown field `{name}`, expected one of `server`, `providers`, `routes`, `client_keys`"
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
        };
        check.config(&config);
        let mut errors = check.errors;
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
        };
        check.config(self);
        if check.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(check.errors))
        }
    }
}
