//! Layered configuration: flags, then `RUNPLANE_*` environment variables, then
//! the YAML file, then built-in defaults.
//!
//! A program declares its settings once, as a `clap` struct whose fields carry
//! their flag, environment variable, default and help text. The YAML file
//! (`--config FILE` or `RUNPLANE_CONFIG`) may be shared by several programs,
//! each with a section of its own ([`Layout`]):
//!
//! ```yaml
//! prometheus_org_metrics:          # top level: settings shared by the programs
//!   - org_name: cyberdyne
//! metrics_service:                 # a section per program, keys as the flags
//!   listen_addr: 0.0.0.0:8080      # (--listen-addr → listen_addr)
//! ```
//!
//! The file's values become the defaults of the matching flags before the
//! command line is parsed, so clap applies the precedence and `--help` shows
//! the effective values. An unknown key is an error, not a silent typo.
//!
//! This crate knows the file's shape, not its contents: which sections and
//! shared keys exist is the reader's to say.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// How the shared file is laid out, as one reader of it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The reader's own section.
    pub section: String,
    /// Every section the file may have; the others' are skipped.
    pub sections: Vec<String>,
    /// Keys allowed at the top level, applied to every reader that has them.
    pub shared_keys: Vec<String>,
    /// Defaults that are the reader's to give, for settings it declares without
    /// one (where it listens, its database file), as (key, value).
    pub defaults: Vec<(String, String)>,
}

/// A configuration problem, reported before the service starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {cause}")]
    Parse {
        path: PathBuf,
        cause: serde_yaml::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Parses `T` from the process's arguments, environment and the shared config
/// file, taking the file's section for this reader. Exits with clap's usage
/// message on bad flags, like any command-line program.
pub fn load<T: Parser>(layout: &Layout) -> Result<T, ConfigError> {
    load_from(layout, std::env::args_os().collect())
}

/// [`load`] over explicit arguments (the first is the program name).
pub fn load_from<T: Parser>(layout: &Layout, args: Vec<OsString>) -> Result<T, ConfigError> {
    let mut command = T::command();
    for (key, value) in &layout.defaults {
        if command
            .get_arguments()
            .any(|arg| arg.get_id() == key.as_str())
        {
            command = command.mut_arg(key.as_str(), |arg| {
                arg.default_value(value.clone()).required(false)
            });
        }
    }
    if let Some(path) = config_path(&args) {
        for (key, value) in file_settings(&path, layout)? {
            if command
                .get_arguments()
                .any(|arg| arg.get_id() == key.as_str())
            {
                command = command.mut_arg(key.as_str(), |arg| arg.default_value(value));
            } else if !layout.shared_keys.contains(&key) {
                return Err(ConfigError::Invalid {
                    path,
                    message: format!("unknown setting `{key}` in section `{}`", layout.section),
                });
            }
        }
    }
    let matches = command
        .try_get_matches_from(args)
        .unwrap_or_else(|e| e.exit());
    T::from_arg_matches(&matches).map_err(|e| e.exit())
}

/// The config file named by `--config FILE`, `--config=FILE` or `RUNPLANE_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("RUNPLANE_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The settings that apply to the layout's section: the shared top-level keys,
/// overridden by the section's own keys, each rendered as a command-line value.
pub fn file_settings(path: &Path, layout: &Layout) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_owned(),
        cause,
    })?;
    parse_settings(&text, layout).map_err(|e| match e {
        SettingsError::Yaml(cause) => ConfigError::Parse {
            path: path.to_owned(),
            cause,
        },
        SettingsError::Invalid(message) => ConfigError::Invalid {
            path: path.to_owned(),
            message,
        },
    })
}

enum SettingsError {
    Yaml(serde_yaml::Error),
    Invalid(String),
}

fn parse_settings(text: &str, layout: &Layout) -> Result<Vec<(String, String)>, SettingsError> {
    use serde_yaml::Value;
    let root: Value = serde_yaml::from_str(text).map_err(SettingsError::Yaml)?;
    let root = match root {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(map) => map,
        _ => {
            return Err(SettingsError::Invalid(
                "the top level must be a mapping".into(),
            ));
        }
    };
    let mut shared = Vec::new();
    let mut own = Vec::new();
    for (key, value) in root {
        let key = key_name(&key)?;
        if layout.sections.contains(&key) {
            if key != layout.section {
                continue;
            }
            let Value::Mapping(entries) = value else {
                if value.is_null() {
                    continue;
                }
                return Err(SettingsError::Invalid(format!(
                    "section `{key}` must be a mapping"
                )));
            };
            for (k, v) in entries {
                let k = key_name(&k)?;
                own.push((k.clone(), render(&k, &v)?));
            }
        } else if layout.shared_keys.contains(&key) {
            shared.push((key.clone(), render(&key, &value)?));
        } else {
            return Err(SettingsError::Invalid(format!(
                "unknown top-level setting `{key}` (expected one of: {}, or a section: {})",
                layout.shared_keys.join(", "),
                layout.sections.join(", ")
            )));
        }
    }
    // Section keys come last so that they win over shared ones.
    shared.retain(|(k, _)| !own.iter().any(|(o, _)| o == k));
    shared.extend(own);
    Ok(shared)
}

fn key_name(key: &serde_yaml::Value) -> Result<String, SettingsError> {
    key.as_str()
        .map(|k| k.replace('-', "_"))
        .ok_or_else(|| SettingsError::Invalid(format!("keys must be strings, found {key:?}")))
}

/// Renders a YAML value as a flag value: scalars as text; lists joined with
/// commas, where an item may be a scalar or a one-entry mapping such as the
/// seed's `- org_name: cyberdyne`.
fn render(key: &str, value: &serde_yaml::Value) -> Result<String, SettingsError> {
    use serde_yaml::Value;
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    if let Some(s) = scalar(value) {
        return Ok(s);
    }
    let invalid = || {
        SettingsError::Invalid(format!(
            "`{key}` must be a scalar or a list of scalars or one-entry mappings"
        ))
    };
    match value {
        Value::Null => Ok(String::new()),
        Value::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let text = match item {
                    Value::Mapping(m) if m.len() == 1 => m.values().next().and_then(scalar),
                    other => scalar(other),
                };
                let text = text.ok_or_else(invalid)?;
                if text.contains(',') {
                    return Err(SettingsError::Invalid(format!(
                        "`{key}`: list items may not contain commas: {text:?}"
                    )));
                }
                out.push(text);
            }
            Ok(out.join(","))
        }
        _ => Err(invalid()),
    }
}

/// Parses a human duration such as `90s`, `5m`, `1h` or `30d` (for clap's `value_parser`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}: write a duration such as 500ms, 90s, 5m, 1h or 30d"))
}

/// A URL setting fit for logs and messages: any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                url.to_owned()
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    struct Example {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Its default is the layout's.
        #[arg(long, env = "RUNPLANE_TEST_ONLY_LISTEN")]
        listen_addr: String,
        #[arg(long, value_delimiter = ',')]
        prometheus_org_metrics: Vec<String>,
    }

    /// Two programs' sections and one shared key, as a suite would declare them.
    pub(super) fn layout(section: &str) -> Layout {
        Layout {
            section: section.to_owned(),
            sections: vec!["org_service".into(), "metrics_service".into()],
            shared_keys: vec!["prometheus_org_metrics".into()],
            defaults: vec![("listen_addr".into(), "127.0.0.1:1".into())],
        }
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write");
        file
    }

    fn args(extra: &[&str]) -> Vec<OsString> {
        std::iter::once("prog")
            .chain(extra.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn file_values_become_defaults_and_flags_win() {
        let file = write(
            "prometheus_org_metrics:\n  - org_name: cyberdyne\n  - org_name: acme-corp\n\
             metrics_service:\n  listen-addr: 0.0.0.0:9\norg_service:\n  ignored: here\n",
        );
        let path = file.path().to_string_lossy().into_owned();
        let cfg: Example =
            load_from(&layout("metrics_service"), args(&["--config", &path])).expect("load");
        assert_eq!(cfg.listen_addr, "0.0.0.0:9");
        assert_eq!(cfg.prometheus_org_metrics, ["cyberdyne", "acme-corp"]);

        let cfg: Example = load_from(
            &layout("metrics_service"),
            args(&[&format!("--config={path}"), "--listen-addr", "1.2.3.4:5"]),
        )
        .expect("load");
        assert_eq!(cfg.listen_addr, "1.2.3.4:5");
    }

    #[test]
    fn the_readers_defaults_apply_when_nothing_else_does() {
        let cfg: Example = load_from(&layout("metrics_service"), args(&[])).expect("load");
        assert_eq!(cfg.listen_addr, "127.0.0.1:1");
        let file = write("metrics_service:\n  listen_addr: 0.0.0.0:9\n");
        let path = file.path().to_string_lossy().into_owned();
        let cfg: Example =
            load_from(&layout("metrics_service"), args(&["--config", &path])).expect("load");
        assert_eq!(
            cfg.listen_addr, "0.0.0.0:9",
            "the file wins over the default"
        );
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let file = write("metrics_service:\n  listen_adr: x\n");
        let path = file.path().to_string_lossy().into_owned();
        let err = load_from::<Example>(&layout("metrics_service"), args(&["--config", &path]))
            .expect_err("typo must fail");
        assert!(err.to_string().contains("listen_adr"), "{err}");

        let file = write("prometheus_org_metric: []\n");
        let path = file.path().to_string_lossy().into_owned();
        let err = load_from::<Example>(&layout("metrics_service"), args(&["--config", &path]))
            .expect_err("typo must fail");
        assert!(err.to_string().contains("prometheus_org_metric"), "{err}");
    }

    #[test]
    fn bad_yaml_and_missing_files_are_reported_with_the_path() {
        let file = write("metrics_service: [\n");
        let path = file.path().to_string_lossy().into_owned();
        let err = load_from::<Example>(&layout("metrics_service"), args(&["--config", &path]))
            .expect_err("bad yaml");
        assert!(err.to_string().contains(&path), "{err}");
        let err = load_from::<Example>(
            &layout("metrics_service"),
            args(&["--config", "/nonexistent.yaml"]),
        )
        .expect_err("missing");
        assert!(err.to_string().contains("/nonexistent.yaml"), "{err}");
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/runplane"),
            "postgres://app:***@db:5432/runplane"
        );
        assert_eq!(
            redact_url("postgres://app@db/runplane"),
            "postgres://app@db/runplane"
        );
        assert_eq!(
            redact_url("sqlite://.runplane/org.db"),
            "sqlite://.runplane/org.db"
        );
    }

    #[test]
    fn durations_parse_in_human_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("soon").is_err());
    }
}

/// Property tests: the loader over arbitrary files.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Text that looks like YAML often enough to reach past the parser.
    fn yamlish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("metrics_service:\n".to_owned()),
                Just("  listen_addr: ".to_owned()),
                Just("prometheus_org_metrics:\n  - org_name: ".to_owned()),
                Just("- ".to_owned()),
                Just(": ".to_owned()),
                Just("\n".to_owned()),
                Just("  ".to_owned()),
                Just("&a *a [{".to_owned()),
                "\\PC{0,12}",
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn the_loader_never_panics_and_names_only_keys_it_was_given(text in yamlish()) {
            for section in ["org_service", "metrics_service"] {
                if let Ok(settings) = parse_settings(&text, &super::tests::layout(section)) {
                    // Keys may be written with `-` (as the flags are); they
                    // come back with `_`, and that is their only change.
                    let given = text.replace('-', "_");
                    for (key, _) in settings {
                        prop_assert!(given.contains(key.as_str()), "{key} not in {text:?}");
                    }
                }
            }
        }

        #[test]
        fn durations_parse_or_fail_without_panicking(text in "\\PC{0,24}") {
            let _ = parse_duration(&text);
        }
    }
}
