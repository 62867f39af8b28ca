//! The DORA families, per (project, environment): deployments by outcome,
//! change failures, the newest deployment of each outcome, lead time for
//! changes, time to restore, and whether a failure is open now
//! (docs/dora.md).

use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{DurationHistogram, EnvironmentMetrics};

use super::runs::buckets_of;
use super::writer::{Kind, Labels, Seconds};
use super::{Families, Gone};

pub(super) const DEPLOYMENTS_HELP: &str =
    "Deployments to the environment finished, by outcome; kept when old deployments are deleted.";
pub(super) const CHANGE_FAILURES_HELP: &str = "Changes deployed to the environment that failed: failed \
deployments, and successful ones a rollback or hotfix then undid.";
pub(super) const LAST_DEPLOYMENT_HELP: &str = "When the newest deployment to the environment with each \
outcome finished, in seconds since the Unix epoch.";
pub(super) const LEAD_TIME_HELP: &str = "Lead time for changes: from commit to its successful deployment \
to the environment, in seconds, for deployments whose commit time is known.";
pub(super) const NO_COMMIT_TIME_HELP: &str = "Successful deployments to the environment whose commit time \
was not known: they have no lead time.";
pub(super) const RESTORE_HELP: &str = "Time to restore: from a failure of the environment (a failed \
deployment, or one a rollback or hotfix undid) to the successful deployment that closed it, in seconds.";
pub(super) const ENVIRONMENT_UP_HELP: &str =
    "1 while the environment has no open failure, 0 from a failed change to its restore.";

impl<E: FnMut(Vec<u8>) -> Result<(), Gone>> Families<'_, E> {
    /// `deployments_total`, by outcome.
    pub(super) fn deployments(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("deployments", DEPLOYMENTS_HELP, Kind::Counter);
        for (e, (project, environment)) in self.environments.iter().zip(&self.environment_names) {
            for (status, count) in [
                ("failure", e.deployments_failed),
                ("success", e.deployments_succeeded),
            ] {
                self.labels.set(&[
                    ("environment", environment),
                    ("org", &self.org),
                    ("project", project),
                    ("status", status),
                ]);
                family.counter(&mut self.chunks.buf, &self.labels, count, e);
            }
        }
        self.chunks.cut_if_full()
    }

    /// `deployment_change_failures_total`.
    pub(super) fn change_failures(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "deployment_change_failures",
            CHANGE_FAILURES_HELP,
            Kind::Counter,
        );
        for (e, (project, environment)) in self.environments.iter().zip(&self.environment_names) {
            environment_labels(&mut self.labels, &self.org, project, environment);
            family.counter(&mut self.chunks.buf, &self.labels, e.change_failures, e);
        }
        self.chunks.cut_if_full()
    }

    /// `deployment_last_timestamp_seconds`, by outcome, for the outcomes seen.
    pub(super) fn last_deployments(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "deployment_last_timestamp_seconds",
            LAST_DEPLOYMENT_HELP,
            Kind::Gauge,
        );
        for (e, (project, environment)) in self.environments.iter().zip(&self.environment_names) {
            for (status, at) in [
                ("failure", &e.last_failure_time),
                ("success", &e.last_success_time),
            ] {
                let Some(at) = at else { continue };
                self.labels.set(&[
                    ("environment", environment),
                    ("org", &self.org),
                    ("project", project),
                    ("status", status),
                ]);
                family.sample(
                    &mut self.chunks.buf,
                    "",
                    &self.labels,
                    Seconds(from_timestamp(at)),
                );
            }
        }
        self.chunks.cut_if_full()
    }

    /// `deployment_lead_time_seconds`, for the environments with one.
    pub(super) fn lead_times(&mut self) -> Result<(), Gone> {
        self.environment_histograms("deployment_lead_time_seconds", LEAD_TIME_HELP, |e| {
            e.lead_time.as_ref()
        })
    }

    /// `deployments_without_commit_time_total`, for the environments with some.
    pub(super) fn without_commit_time(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "deployments_without_commit_time",
            NO_COMMIT_TIME_HELP,
            Kind::Counter,
        );
        for (e, (project, environment)) in self.environments.iter().zip(&self.environment_names) {
            if e.deployments_without_commit_time == 0 {
                continue;
            }
            environment_labels(&mut self.labels, &self.org, project, environment);
            let count = e.deployments_without_commit_time;
            family.counter(&mut self.chunks.buf, &self.labels, count, e);
        }
        self.chunks.cut_if_full()
    }

    /// `deployment_time_to_restore_seconds`, for the environments restored once.
    pub(super) fn restore_times(&mut self) -> Result<(), Gone> {
        self.environment_histograms("deployment_time_to_restore_seconds", RESTORE_HELP, |e| {
            e.restore_time.as_ref()
        })
    }

    /// `environment_up`.
    pub(super) fn environment_up(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("environment_up", ENVIRONMENT_UP_HELP, Kind::Gauge);
        for (e, (project, environment)) in self.environments.iter().zip(&self.environment_names) {
            environment_labels(&mut self.labels, &self.org, project, environment);
            let up = u8::from(e.failing_since.is_none());
            family.sample(&mut self.chunks.buf, "", &self.labels, up);
        }
        self.chunks.cut_if_full()
    }

    fn environment_histograms(
        &mut self,
        name: &str,
        help: &'static str,
        which: impl Fn(&EnvironmentMetrics) -> Option<&DurationHistogram>,
    ) -> Result<(), Gone> {
        let mut family = self.writer.family(name, help, Kind::Histogram);
        for (e, (project, environment)) in self.environments.iter().zip(&self.environment_names) {
            let Some(histogram) = which(e).filter(|h| h.count > 0) else {
                continue;
            };
            environment_labels(&mut self.labels, &self.org, project, environment);
            family.histogram(
                &mut self.chunks.buf,
                &self.labels,
                &buckets_of(histogram),
                e,
            );
        }
        self.chunks.cut_if_full()
    }
}

/// `environment`, `org`, `project`: the labels of a per-environment series.
fn environment_labels(labels: &mut Labels, org: &str, project: &str, environment: &str) {
    labels.set(&[
        ("environment", environment),
        ("org", org),
        ("project", project),
    ]);
}
