//! `runplane.workflowrun.v1.ListWorkflowMetricsResponse`, written by hand so
//! that its workflows stay in their wire form.
//!
//! workflow-run-service keeps each workflow's `WorkflowMetrics` encoded, and a
//! scrape's page is those stored bytes: decoding them only to encode them
//! again for the reply was most of its work. This type lets the server copy
//! them into the reply as they are ([`ListWorkflowMetricsResponse::push_encoded`])
//! and the client decode them where it reads them
//! ([`ListWorkflowMetricsResponse::workflows`]). On the wire it is the message
//! `proto/` declares, so any other client is unaffected.
//!
//! The message is mapped here with `extern_path` (see `build.rs`); the
//! `prost::encoding` helpers it uses are those the generated code calls.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use crate::workflowrun::v1::{EnvironmentMetrics, WorkflowMetrics, WorkflowNow};

/// The field numbers of `ListWorkflowMetricsResponse`.
const WORKFLOWS: u32 = 1;
const NEXT_PAGE_TOKEN: u32 = 2;
const ENVIRONMENTS: u32 = 3;
const REVISION: u32 = 4;
const UNCHANGED: u32 = 5;
const NOW: u32 = 6;

/// A page of workflow aggregates.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ListWorkflowMetricsResponse {
    /// Fields 1 and 3 exactly as they are on the wire: for each workflow (and
    /// each environment), in order, its key, its length and its encoded
    /// `WorkflowMetrics` (`EnvironmentMetrics`).
    workflows: Vec<u8>,
    /// Number of workflows in `workflows`.
    len: usize,
    /// Empty on the last page.
    pub next_page_token: String,
    /// See the proto: the aggregates' revision, whether the caller's is
    /// current, and what is true now, apart.
    pub revision: String,
    pub unchanged: bool,
    pub now: Vec<WorkflowNow>,
}

impl std::fmt::Debug for ListWorkflowMetricsResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListWorkflowMetricsResponse")
            .field("workflows", &self.len)
            .field("encoded_bytes", &self.workflows.len())
            .field("next_page_token", &self.next_page_token)
            .field("revision", &self.revision)
            .field("unchanged", &self.unchanged)
            .field("now", &self.now.len())
            .finish()
    }
}

impl ListWorkflowMetricsResponse {
    /// A page of `workflows`.
    pub fn new<'a>(
        workflows: impl IntoIterator<Item = &'a WorkflowMetrics>,
        next_page_token: String,
    ) -> Self {
        let mut page = Self {
            next_page_token,
            ..Self::default()
        };
        for workflow in workflows {
            page.push(workflow);
        }
        page
    }

    /// Appends a workflow.
    pub fn push(&mut self, workflow: &WorkflowMetrics) {
        encoding::message::encode(WORKFLOWS, workflow, &mut self.workflows);
        self.len += 1;
    }

    /// Appends a workflow given as the encoding of a `WorkflowMetrics`
    /// followed by more of its fields, also encoded (protobuf merges the two:
    /// a field set in both takes the value of `more`, a repeated one gets
    /// both's elements). Neither is checked here: what the caller passes is
    /// what the client decodes.
    pub fn push_encoded(&mut self, workflow: &[u8], more: &[u8]) {
        encoding::encode_key(WORKFLOWS, WireType::LengthDelimited, &mut self.workflows);
        encoding::encode_varint((workflow.len() + more.len()) as u64, &mut self.workflows);
        self.workflows.extend_from_slice(workflow);
        self.workflows.extend_from_slice(more);
        self.len += 1;
    }

    /// Appends an environment's DORA aggregates.
    pub fn push_environment(&mut self, environment: &EnvironmentMetrics) {
        encoding::message::encode(ENVIRONMENTS, environment, &mut self.workflows);
    }

    /// Number of workflows on the page.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The page's workflows, decoded.
    pub fn workflows(&self) -> Result<Vec<WorkflowMetrics>, DecodeError> {
        decode_workflows(&self.workflows)
    }

    /// The page's workflows (and environments) as they are on the wire: what
    /// [`decode_workflows`] and [`decode_page`] read, also when pages are
    /// joined end to end.
    pub fn encoded_workflows(&self) -> &[u8] {
        &self.workflows
    }

    /// The same, taken out of the page.
    pub fn into_encoded_workflows(self) -> Vec<u8> {
        self.workflows
    }
}

/// Workflows in their wire form (one page's
/// [`ListWorkflowMetricsResponse::encoded_workflows`], or several joined),
/// decoded.
pub fn decode_workflows(buf: &[u8]) -> Result<Vec<WorkflowMetrics>, DecodeError> {
    Ok(decode_page(buf)?.workflows)
}

/// What pages of aggregates hold, decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedPage {
    pub workflows: Vec<WorkflowMetrics>,
    pub environments: Vec<EnvironmentMetrics>,
}

/// Workflows and environments in their wire form (see [`decode_workflows`]),
/// decoded.
pub fn decode_page(mut buf: &[u8]) -> Result<DecodedPage, DecodeError> {
    let mut page = DecodedPage::default();
    while buf.has_remaining() {
        // Only `merge_field` and `push*` write here: every entry is field 1
        // or 3, length-delimited.
        let (tag, wire_type) = encoding::decode_key(&mut buf)?;
        let ctx = DecodeContext::default();
        match tag {
            ENVIRONMENTS => {
                let mut environment = EnvironmentMetrics::default();
                encoding::message::merge(wire_type, &mut environment, &mut buf, ctx)?;
                page.environments.push(environment);
            }
            _ => {
                let mut workflow = WorkflowMetrics::default();
                encoding::message::merge(wire_type, &mut workflow, &mut buf, ctx)?;
                page.workflows.push(workflow);
            }
        }
    }
    Ok(page)
}

impl Message for ListWorkflowMetricsResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.workflows);
        if !self.next_page_token.is_empty() {
            encoding::string::encode(NEXT_PAGE_TOKEN, &self.next_page_token, buf);
        }
        if !self.revision.is_empty() {
            encoding::string::encode(REVISION, &self.revision, buf);
        }
        if self.unchanged {
            encoding::bool::encode(UNCHANGED, &self.unchanged, buf);
        }
        for now in &self.now {
            encoding::message::encode(NOW, now, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            WORKFLOWS => {
                // A slice of the received buffer where the buffer allows it
                // (tonic's does): copied once, into the page.
                let mut workflow = Bytes::new();
                encoding::bytes::merge(wire_type, &mut workflow, buf, ctx)?;
                self.push_encoded(&workflow, &[]);
                Ok(())
            }
            NEXT_PAGE_TOKEN => {
                encoding::string::merge(wire_type, &mut self.next_page_token, buf, ctx)
            }
            REVISION => encoding::string::merge(wire_type, &mut self.revision, buf, ctx),
            UNCHANGED => encoding::bool::merge(wire_type, &mut self.unchanged, buf, ctx),
            NOW => encoding::message::merge_repeated(wire_type, &mut self.now, buf, ctx),
            ENVIRONMENTS => {
                let mut environment = Bytes::new();
                encoding::bytes::merge(wire_type, &mut environment, buf, ctx)?;
                encoding::encode_key(ENVIRONMENTS, WireType::LengthDelimited, &mut self.workflows);
                encoding::encode_varint(environment.len() as u64, &mut self.workflows);
                self.workflows.extend_from_slice(&environment);
                Ok(())
            }
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let string = |tag, value: &String| {
            if value.is_empty() {
                0
            } else {
                encoding::string::encoded_len(tag, value)
            }
        };
        self.workflows.len()
            + string(NEXT_PAGE_TOKEN, &self.next_page_token)
            + string(REVISION, &self.revision)
            + if self.unchanged {
                encoding::bool::encoded_len(UNCHANGED, &self.unchanged)
            } else {
                0
            }
            + encoding::message::encoded_len_repeated(NOW, &self.now)
    }

    fn clear(&mut self) {
        self.workflows.clear();
        self.len = 0;
        self.next_page_token.clear();
        self.revision.clear();
        self.unchanged = false;
        self.now.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflowrun::v1::{DurationHistogram, LastRun};

    /// What `protoc` generates for the same message, to check the wire form
    /// against.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(message, repeated, tag = "1")]
        workflows: Vec<WorkflowMetrics>,
        #[prost(string, tag = "2")]
        next_page_token: String,
        #[prost(message, repeated, tag = "3")]
        environments: Vec<EnvironmentMetrics>,
        #[prost(string, tag = "4")]
        revision: String,
        #[prost(bool, tag = "5")]
        unchanged: bool,
        #[prost(message, repeated, tag = "6")]
        now: Vec<WorkflowNow>,
    }

    fn workflow(id: &str, in_progress: u32) -> WorkflowMetrics {
        WorkflowMetrics {
            workflow_id: id.into(),
            project: "default".into(),
            workflow: format!("build {id}"),
            last_run: Some(LastRun {
                status: 1,
                duration_seconds: Some(1.5),
                ..LastRun::default()
            }),
            durations: vec![DurationHistogram {
                bucket_bounds: vec![1.0, 10.0],
                bucket_counts: vec![0, 1],
                count: 1,
                sum_seconds: 1.5,
                ..DurationHistogram::default()
            }],
            runs_in_progress: in_progress,
            ..WorkflowMetrics::default()
        }
    }

    #[test]
    fn the_wire_form_is_the_generated_message() {
        let workflows = vec![workflow("a", 0), workflow("b", 3)];
        let generated = Generated {
            workflows: workflows.clone(),
            next_page_token: "next".into(),
            ..Generated::default()
        };
        let page = ListWorkflowMetricsResponse::new(&workflows, "next".into());
        assert_eq!(page.encode_to_vec(), generated.encode_to_vec());
        assert_eq!(page.encoded_len(), generated.encoded_len());

        let decoded = ListWorkflowMetricsResponse::decode(generated.encode_to_vec().as_slice())
            .expect("decode");
        assert_eq!(decoded, page);
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded.workflows().expect("workflows"), workflows);
        assert_eq!(decoded.next_page_token, "next");

        let last = ListWorkflowMetricsResponse::default();
        assert!(last.encode_to_vec().is_empty() && last.workflows().expect("none").is_empty());
    }

    #[test]
    fn a_first_page_with_environments_revision_and_now_is_the_generated_message() {
        let workflows = vec![workflow("a", 0)];
        let environments = vec![EnvironmentMetrics {
            project: "web".into(),
            environment: "production".into(),
            deployments_succeeded: 3,
            ..EnvironmentMetrics::default()
        }];
        let now = vec![WorkflowNow {
            workflow_id: "a".into(),
            runs_in_progress: 2,
            ..WorkflowNow::default()
        }];
        let generated = Generated {
            workflows: workflows.clone(),
            environments: environments.clone(),
            revision: "42".into(),
            unchanged: true,
            now: now.clone(),
            ..Generated::default()
        };
        let mut page = ListWorkflowMetricsResponse::new(&workflows, String::new());
        page.push_environment(&environments[0]);
        page.revision = "42".into();
        page.unchanged = true;
        page.now = now;
        assert_eq!(page.encode_to_vec(), generated.encode_to_vec());
        assert_eq!(page.encoded_len(), generated.encoded_len());
        let decoded = ListWorkflowMetricsResponse::decode(generated.encode_to_vec().as_slice())
            .expect("decode");
        assert_eq!(decoded, page);
        let joined = decode_page(decoded.encoded_workflows()).expect("page");
        assert_eq!(
            (joined.workflows, joined.environments),
            (workflows, environments)
        );
    }

    #[test]
    fn an_encoded_workflow_takes_the_fields_appended_to_it() {
        let stored = workflow("a", 0);
        let more = WorkflowMetrics {
            runs_in_progress: 7,
            ..WorkflowMetrics::default()
        };
        let mut page = ListWorkflowMetricsResponse::default();
        page.push_encoded(&stored.encode_to_vec(), &more.encode_to_vec());
        let decoded = Generated::decode(page.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(decoded.workflows, [workflow("a", 7)]);
        assert_eq!(page.workflows().expect("workflows"), decoded.workflows);
    }

    #[test]
    fn malformed_pages_are_refused() {
        let page = ListWorkflowMetricsResponse::new(&[workflow("a", 1)], String::new());
        let bytes = page.encode_to_vec();
        assert!(ListWorkflowMetricsResponse::decode(&bytes[..bytes.len() - 1]).is_err());
        // A workflow whose own bytes are garbage frames fine, then fails to decode.
        let mut garbage = ListWorkflowMetricsResponse::default();
        garbage.push_encoded(&[0xff, 0xff], &[]);
        let relayed = ListWorkflowMetricsResponse::decode(garbage.encode_to_vec().as_slice())
            .expect("framing is valid");
        assert!(relayed.workflows().is_err());
    }
}
