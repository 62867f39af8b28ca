//! `runplane workflow …`: an organization's workflows.

use std::process::ExitCode;

use clap::Subcommand;
use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{ListWorkflowsRequest, RunStatus, Workflow};

use crate::cli::Global;
use crate::output::{WorkflowJson, format_time, print_json, status_name};
use crate::run::{Reporter, TokenArg};

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCommand {
    /// List the organization's workflows and how their last run ended (needs `metrics:read`).
    List {
        /// Only this project's workflows.
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        token: TokenArg,
    },
}

/// Runs a workflow command.
pub(crate) async fn run(global: &Global, command: WorkflowCommand) -> anyhow::Result<ExitCode> {
    let WorkflowCommand::List { project, token } = command;
    let reporter = Reporter::new(global, token)?;
    let mut workflows: Vec<Workflow> = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListWorkflowsRequest {
            page_size: 1000,
            page_token,
            project: project.clone().unwrap_or_default(),
        };
        let page = reporter
            .call(
                "listing workflows",
                request,
                |mut client, request| async move { client.list_workflows(request).await },
            )
            .await?;
        workflows.extend(page.workflows);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if global.json() {
        print_json(&workflows.iter().map(WorkflowJson::from).collect::<Vec<_>>())?;
    } else if global.quiet {
        workflows
            .iter()
            .for_each(|w| outln!("{}/{}", w.project, w.name));
    } else {
        outln!(
            "{:<24} {:<36} {:<9} {:<22} CREATED",
            "PROJECT",
            "WORKFLOW",
            "LAST RUN",
            "LAST FINISHED"
        );
        for w in &workflows {
            let last = match w.last_run_status() {
                RunStatus::Unspecified => "-",
                status => status_name(status),
            };
            outln!(
                "{:<24} {:<36} {:<9} {:<22} {}",
                w.project,
                w.name,
                last,
                format_time(w.last_run_finish_time.as_ref().map(from_timestamp)),
                format_time(w.create_time.as_ref().map(from_timestamp))
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
