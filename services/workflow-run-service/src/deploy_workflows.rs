//! `deploy_workflows`: workflows whose runs are deployments. A run of one
//! that ends in success or error is recorded as a deployment of its commit to
//! the workflow's environment (a canceled or expired run deployed nothing).

use std::str::FromStr;

/// The setting: which workflow deploys to which environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployWorkflows(Vec<DeployWorkflow>);

/// One workflow that deploys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployWorkflow {
    /// Empty means "default", as in the API.
    #[serde(default)]
    pub project: String,
    pub workflow: String,
    pub environment: String,
}

impl DeployWorkflows {
    /// The environment `project`'s `workflow` deploys to, if it deploys.
    pub(crate) fn environment_of(&self, project: &str, workflow: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|d| d.project == project && d.workflow == workflow)
            .map(|d| d.environment.as_str())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for DeployWorkflows {
    type Err = String;

    /// A YAML (or JSON) list of `{project, workflow, environment}`, as the
    /// config file's key gives it; empty: none.
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(DeployWorkflows::default());
        }
        const EXAMPLE: &str = "[{project: acme/web, workflow: Deploy, environment: production}]";
        let value: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| format!("{e}: write a list such as {EXAMPLE}"))?;
        let serde_yaml::Value::Sequence(items) = value else {
            return Err(format!(
                "write a list of {{project, workflow, environment}} (each with at least \
                 workflow and environment), such as {EXAMPLE}"
            ));
        };
        let mut list = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let entry: DeployWorkflow = serde_yaml::from_value(item).map_err(|e| {
                format!(
                    "item {}: {e}: each is {{project, workflow, environment}}, such as \
                     {{workflow: Deploy, environment: production}}",
                    i + 1
                )
            })?;
            list.push(entry);
        }
        for entry in &mut list {
            if entry.project.is_empty() {
                "default".clone_into(&mut entry.project);
            }
            for (what, name) in [
                ("project", &entry.project),
                ("workflow", &entry.workflow),
                ("environment", &entry.environment),
            ] {
                if let Some(problem) = runplane_api::workflow_name::problem(name) {
                    return Err(format!("{what} name {problem}"));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = list
            .iter()
            .find(|d| !seen.insert((&d.project, &d.workflow)))
        {
            return Err(format!(
                "workflow {}/{} is listed twice: a workflow deploys to one environment",
                twice.project, twice.workflow
            ));
        }
        Ok(DeployWorkflows(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_lists_both_parse_and_project_defaults() {
        let yaml: DeployWorkflows = "- {workflow: Deploy, environment: production}\n\
             - project: acme/web\n  workflow: Ship\n  environment: staging\n"
            .parse()
            .expect("yaml");
        assert_eq!(yaml.environment_of("default", "Deploy"), Some("production"));
        assert_eq!(yaml.environment_of("acme/web", "Ship"), Some("staging"));
        assert_eq!(yaml.environment_of("acme/web", "Deploy"), None);
        let json: DeployWorkflows = r#"[{"project":"p","workflow":"w","environment":"e"}]"#
            .parse()
            .expect("json");
        assert_eq!(json.environment_of("p", "w"), Some("e"));
        assert!("".parse::<DeployWorkflows>().expect("empty").is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        for (text, says) in [
            ("[{workflow: w}]", "item 1: missing field `environment`"),
            (
                "[{workflow: w, environment: e, env: x}]",
                "unknown field `env`",
            ),
            ("[{workflow: w, environment: \"\"}]", "environment name"),
            (
                "[{workflow: w, environment: a}, {workflow: w, environment: b}]",
                "listed twice",
            ),
            ("production", "write a list"),
            // A one-key item, as the config file flattens it.
            ("Deploy", "write a list"),
        ] {
            let error = text.parse::<DeployWorkflows>().expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
