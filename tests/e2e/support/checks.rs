//! What tests check expositions with: Prometheus' own promtool and Python's
//! prometheus_client, parsers that are not runplane's.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

/// An exposition without its `*_scrape_duration_seconds` lines.
pub(crate) fn without_scrape_duration(exposition: &str) -> String {
    exposition
        .lines()
        .filter(|l| !l.contains("_scrape_duration_seconds"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs `promtool check metrics` on an exposition and returns its complaints.
pub(crate) fn promtool_check(exposition: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool is required: install the Debian package `prometheus` (scripts/test does)",
        );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// One sample as an independent OpenMetrics parser read it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ParsedSample {
    pub(crate) family: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    pub(crate) value: f64,
    pub(crate) timestamp: Option<String>,
    /// A histogram bucket's exemplar, if it carries one.
    pub(crate) exemplar: Option<ParsedExemplar>,
}

/// An exemplar as the parser read it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ParsedExemplar {
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    pub(crate) value: f64,
    pub(crate) timestamp: Option<String>,
}

/// Parses an OpenMetrics exposition with Python's `prometheus_client` (the
/// interpreter in RUNPLANE_TEST_PYTHON, which scripts/test provides, or
/// `python3`); its complaint when the exposition is invalid.
pub(crate) fn parse_openmetrics(exposition: &str) -> Result<Vec<ParsedSample>, String> {
    use std::io::Write as _;
    let python = std::env::var("RUNPLANE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/e2e/scripts/parse_openmetrics.py"
    );
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{python} is required (scripts/test provides one with prometheus_client): {e}")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to the parser");
    let output = child.wait_with_output().expect("parser");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named"),
        "prometheus_client is missing for {python}: {stderr} (scripts/test installs it)"
    );
    if !output.status.success() {
        return Err(stderr.into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("parser output"))
        .collect())
}

/// `name{label=value,…}` with labels sorted, from a parsed sample.
pub(crate) fn key(name: &str, labels: &BTreeMap<String, String>) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// The samples of a text exposition (label values here need no unescaping).
pub(crate) fn text_samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample");
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let labels: BTreeMap<String, String> = labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once("=\"").expect("label");
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            let value = value.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
            (key(name, &labels), value)
        })
        .collect()
}
