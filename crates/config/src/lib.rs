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
//! the effective values. A top-level key applies to every reader that has it;
//! a key no reader has, or a key in a section that its reader does not have,
//! is an error, not a silent typo. A value the file gives that does not parse
//! is reported with the file and the key.
//!
//! This crate knows the file's shape, not its contents: which sections and
//! top-level keys exist is the readers' to say.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// How the shared file is laid out, as one reader of it sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The reader's own section, if it has one.
    pub section: Option<String>,
    /// Every section the file may have; the others' are skipped.
    pub sections: Vec<String>,
    /// Keys allowed at the top level: the settings some reader of the file
    /// has. Each reader applies those it has.
    pub top_level_keys: Vec<String>,
    /// Defaults that are the reader's to give, for settings it declares without
    /// one (where it listens, its database file), as (key, value).
    pub defaults: Vec<(String, String)>,
}

/// One setting the file gives a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    /// As a command-line value.
    pub value: String,
    /// Given in the reader's section rather than at the top.
    pub in_section: bool,
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
    /// The command line or the environment is wrong (clap's own message).
    #[error("{0}")]
    Usage(Box<clap::Error>),
}

impl ConfigError {
    /// Prints clap's message and exits, for a usage error (and `--help`);
    /// returns any other error.
    pub fn exit_on_usage(self) -> Self {
        match self {
            ConfigError::Usage(e) => e.exit(),
            other => other,
        }
    }
}

/// A configuration as loaded, and which of its settings were given
/// explicitly: on the command line or in the environment.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    pub explicit: BTreeSet<String>,
}

/// Parses `T` from the process's arguments, environment and the shared config
/// file, taking the file's section for this reader. `--help` and `--version`
/// print and exit, like any command-line program.
pub fn load<T: Parser>(layout: &Layout) -> Result<T, ConfigError> {
    load_from(layout, std::env::args_os().collect())
}

/// [`load`] over explicit arguments (the first is the program name).
pub fn load_from<T: Parser>(layout: &Layout, args: Vec<OsString>) -> Result<T, ConfigError> {
    Ok(load_explicit_from(layout, args)?.config)
}

/// [`load_from`], also telling which settings were given explicitly.
pub fn load_explicit_from<T: Parser>(
    layout: &Layout,
    args: Vec<OsString>,
) -> Result<Loaded<T>, ConfigError> {
    let mut command = T::command();
    let has =
        |command: &clap::Command, key: &str| command.get_arguments().any(|a| a.get_id() == key);
    for (key, value) in &layout.defaults {
        if has(&command, key) {
            command = command.mut_arg(key.as_str(), |arg| {
                arg.default_value(value.clone()).required(false)
            });
        }
    }
    let path = config_path(&args);
    let mut from_file = BTreeSet::new();
    if let Some(path) = &path {
        for setting in file_settings(path, layout)? {
            if has(&command, &setting.key) {
                from_file.insert(setting.key.clone());
                command = command.mut_arg(setting.key.as_str(), |arg| {
                    arg.default_value(setting.value).required(false)
                });
            } else if setting.in_section {
                return Err(ConfigError::Invalid {
                    path: path.clone(),
                    message: format!(
                        "unknown setting `{}` in section `{}`: {} has no such setting",
                        setting.key,
                        layout.section.as_deref().unwrap_or_default(),
                        command.get_name()
                    ),
                });
            }
        }
    }
    let matches = match command.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            return Err(match (path, invalid_setting(&e)) {
                (Some(path), Some(key))
                    if from_file.contains(&key) && !given(&command, &key, &args) =>
                {
                    ConfigError::Invalid {
                        path,
                        message: format!("`{key}`: {}", first_line(&e)),
                    }
                }
                _ => ConfigError::Usage(Box::new(e)),
            });
        }
    };
    let explicit = command
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|id| {
            matches!(
                matches.value_source(id),
                Some(
                    clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable
                )
            )
        })
        .map(str::to_owned)
        .collect();
    let config = T::from_arg_matches(&matches).map_err(|e| ConfigError::Usage(Box::new(e)))?;
    Ok(Loaded { config, explicit })
}

/// The setting a clap error is about, by its file key (`--upstream-timeout
/// <UPSTREAM_TIMEOUT>` → `upstream_timeout`).
fn invalid_setting(e: &clap::Error) -> Option<String> {
    match e.get(clap::error::ContextKind::InvalidArg)? {
        clap::error::ContextValue::String(arg) => {
            let flag = arg.strip_prefix("--")?.split([' ', '=']).next()?;
            Some(flag.replace('-', "_"))
        }
        _ => None,
    }
}

/// Whether `key` was given on the command line or in the environment.
fn given(command: &clap::Command, key: &str, args: &[OsString]) -> bool {
    let flag = format!("--{}", key.replace('_', "-"));
    let on_command_line = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    let in_environment = command
        .get_arguments()
        .find(|a| a.get_id() == key)
        .and_then(|a| a.get_env())
        .is_some_and(|name| std::env::var_os(name).is_some());
    on_command_line || in_environment
}

/// clap's message without its `error: ` and its usage advice.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
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

/// The settings the file gives the layout's reader: the top-level keys,
/// overridden by its section's own keys, each rendered as a command-line value.
pub fn file_settings(path: &Path, layout: &Layout) -> Result<Vec<Setting>, ConfigError> {
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

fn parse_settings(text: &str, layout: &Layout) -> Result<Vec<Setting>, SettingsError> {
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
            if layout.section.as_ref() != Some(&key) {
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
                own.push(Setting {
                    value: render(&k, &v)?,
                    key: k,
                    in_section: true,
                });
            }
        } else if layout.top_level_keys.contains(&key) {
            shared.push(Setting {
                value: render(&key, &value)?,
                key,
                in_section: false,
            });
        } else {
            return Err(SettingsError::Invalid(format!(
                "unknown top-level setting `{key}`: no runplane service has it, and it is not a \
                 section ({}); per-service settings such as listen_addr go in a section",
                layout.sections.join(", ")
            )));
        }
    }
    // Section keys come last so that they win over top-level ones.
    shared.retain(|s| !own.iter().any(|o| o.key == s.key));
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
/// seed's `- org_name: cyberdyne`; a list of records (mappings of several
/// entries, such as `deploy_workflows`) as JSON, which its flag parses.
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
        Value::Sequence(items)
            if items
                .iter()
                .any(|item| matches!(item, Value::Mapping(m) if m.len() > 1)) =>
        {
            // JSON: YAML that fits on one line, as errors quote it.
            serde_json::to_string(value)
                .map_err(|e| SettingsError::Invalid(format!("`{key}`: {e}")))
        }
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
        #[arg(long, env = "RUNPLANE_TEST_ONLY_RETRIES")]
        retries: Option<u32>,
    }

    /// Two programs' sections and one shared key, as a suite would declare them.
    pub(super) fn layout(section: &str) -> Layout {
        Layout {
            section: Some(section.to_owned()),
            sections: vec!["org_service".into(), "metrics_service".into()],
            top_level_keys: vec!["prometheus_org_metrics".into(), "run_timeout".into()],
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
    fn a_top_level_key_applies_to_readers_that_have_it_and_a_section_holds_only_its_readers() {
        // run_timeout is some other reader's: ignored here, not an error.
        let file = write("run_timeout: 1h\nmetrics_service:\n  retries: 3\n");
        let path = file.path().to_string_lossy().into_owned();
        let cfg: Example =
            load_from(&layout("metrics_service"), args(&["--config", &path])).expect("load");
        assert_eq!(cfg.retries, Some(3));
        // In this reader's own section, a setting it does not have is an error.
        let file = write("metrics_service:\n  run_timeout: 1h\n");
        let path = file.path().to_string_lossy().into_owned();
        let err = load_from::<Example>(&layout("metrics_service"), args(&["--config", &path]))
            .expect_err("not this reader's");
        assert!(
            err.to_string()
                .contains("unknown setting `run_timeout` in section `metrics_service`"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_from_the_file_names_the_file_and_the_key_and_a_bad_flag_is_usage() {
        let file = write("metrics_service:\n  retries: lots\n");
        let path = file.path().to_string_lossy().into_owned();
        let err = load_from::<Example>(&layout("metrics_service"), args(&["--config", &path]))
            .expect_err("not a number");
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path) && text.contains("`retries`"), "{text}");
        assert!(text.contains("lots"), "{text}");
        // The same value on the command line is the command line's mistake.
        let err = load_from::<Example>(&layout("metrics_service"), args(&["--retries", "lots"]))
            .expect_err("not a number");
        assert!(matches!(err, ConfigError::Usage(_)), "{err:?}");
        // A good flag over a bad file value wins, and nothing is wrong.
        let cfg: Example = load_from(
            &layout("metrics_service"),
            args(&["--config", &path, "--retries", "2"]),
        )
        .expect("the flag wins");
        assert_eq!(cfg.retries, Some(2));
    }

    #[test]
    fn explicit_settings_are_those_on_the_command_line() {
        let file = write("metrics_service:\n  retries: 3\n");
        let path = file.path().to_string_lossy().into_owned();
        let loaded: Loaded<Example> = load_explicit_from(
            &layout("metrics_service"),
            args(&["--config", &path, "--listen-addr", "1.2.3.4:5"]),
        )
        .expect("load");
        assert!(loaded.explicit.contains("listen_addr"));
        assert!(!loaded.explicit.contains("retries"), "from the file");
        assert_eq!(loaded.config.retries, Some(3));
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
                    for super::Setting { key, .. } in settings {
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
