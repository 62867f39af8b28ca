//! How a workflow's aggregates ([`crate::aggregate`]) are stored: its metrics
//! record, kept encoded in the workflow's row (`workflows.metrics`) and
//! rewritten by every finish in the transaction that finishes the run, so it
//! is the one stored copy of the aggregates.
//!
//! Each record is stored as a `ListWorkflowMetricsResponse` holding only its
//! own workflow. Concatenated protobuf messages decode as one message whose
//! repeated fields hold all of theirs, so a scrape's page is the page's
//! records joined by the database, passed on without being decoded: no row is
//! built as text, parsed, or converted field by field (that took about half a
//! 1,000-workflow scrape's time).
//!
//! Decoding drops fields a binary does not know, so during a rolling upgrade an
//! older replica that rewrites a record loses what a newer one added to
//! `WorkflowMetrics`: a new field the records must keep needs its own
//! migration, or an upgrade with no older replica left writing.

use prost::Message as _;
use prost::encoding::{self, DecodeContext, WireType};
use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{ListWorkflowMetricsResponse, WorkflowMetrics};

/// `ListWorkflowMetricsResponse.workflows` and `WorkflowMetrics.workflow_id`.
const WORKFLOWS_FIELD: u32 = 1;
const WORKFLOW_ID_FIELD: u32 = 1;

/// A stored record that does not decode (a corrupted row).
#[derive(Debug, thiserror::Error)]
#[error("corrupt metrics record: {0}")]
pub(crate) struct CorruptRecord(pub(crate) String);

/// The stored form of a record, without its exemplars (see [`encode_split`]).
pub(crate) fn encode(record: &WorkflowMetrics) -> Vec<u8> {
    if record.exemplars.is_empty() {
        return ListWorkflowMetricsResponse::new([record], String::new()).encode_to_vec();
    }
    let without = WorkflowMetrics {
        exemplars: Vec::new(),
        ..record.clone()
    };
    ListWorkflowMetricsResponse::new([&without], String::new()).encode_to_vec()
}

/// The stored forms of a record and of its exemplars, which are kept apart
/// (`workflows.exemplars`): only OpenMetrics scrapes read them, so the others
/// neither fetch nor decode them. The exemplars' form is a record holding
/// only its workflow id and them, so that a page joins it to the record as
/// more of its fields; empty when there are none.
pub(crate) fn encode_split(record: &mut WorkflowMetrics) -> (Vec<u8>, Vec<u8>) {
    let exemplars = std::mem::take(&mut record.exemplars);
    let metrics = encode(record);
    let stored_exemplars = if exemplars.is_empty() {
        Vec::new()
    } else {
        let only = WorkflowMetrics {
            workflow_id: record.workflow_id.clone(),
            exemplars,
            ..WorkflowMetrics::default()
        };
        let bytes = ListWorkflowMetricsResponse::new([&only], String::new()).encode_to_vec();
        record.exemplars = only.exemplars;
        bytes
    };
    (metrics, stored_exemplars)
}

/// A record read back from the stored forms [`encode_split`] wrote.
pub(crate) fn decode_with_exemplars(
    metrics: &[u8],
    exemplars: &[u8],
) -> Result<WorkflowMetrics, CorruptRecord> {
    let mut record = decode(metrics)?;
    if !exemplars.is_empty() {
        record.exemplars = decode(exemplars)?.exemplars;
    }
    Ok(record)
}

/// A record, read back from [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<WorkflowMetrics, CorruptRecord> {
    let records = decode_page(bytes)?;
    let count = records.len();
    match <[WorkflowMetrics; 1]>::try_from(records) {
        Ok([record]) => Ok(record),
        Err(_) => Err(CorruptRecord(format!("{count} workflows in one record"))),
    }
}

/// The records of a page, read from their stored forms joined in any order.
pub(crate) fn decode_page(bytes: &[u8]) -> Result<Vec<WorkflowMetrics>, CorruptRecord> {
    let page =
        ListWorkflowMetricsResponse::decode(bytes).map_err(|e| CorruptRecord(e.to_string()))?;
    if !page.next_page_token.is_empty() {
        return Err(CorruptRecord("a record holds a page token".into()));
    }
    page.workflows().map_err(|e| CorruptRecord(e.to_string()))
}

/// A stored record where it lies: its workflow's id and its encoded
/// `WorkflowMetrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored<'a> {
    pub(crate) workflow_id: &'a str,
    pub(crate) message: &'a [u8],
}

/// The records of a page, from their stored forms joined in any order, left
/// encoded: only each one's framing and workflow id are read, so a scrape's
/// page reaches the reply without being decoded and encoded again (that was
/// about half of workflow-run-service's work per scrape). Whatever else a
/// record holds is decoded by the reader of the reply.
pub(crate) fn split_page<'a>(
    mut bytes: &'a [u8],
    into: &mut Vec<Stored<'a>>,
) -> Result<(), CorruptRecord> {
    while !bytes.is_empty() {
        let (tag, wire_type) = encoding::decode_key(&mut bytes).map_err(corrupt)?;
        if (tag, wire_type) != (WORKFLOWS_FIELD, WireType::LengthDelimited) {
            return Err(CorruptRecord(format!("field {tag} in a page of records")));
        }
        let message = length_delimited(&mut bytes)?;
        into.push(Stored {
            workflow_id: workflow_id(message)?,
            message,
        });
    }
    Ok(())
}

/// The `workflow_id` of an encoded `WorkflowMetrics`: its first field, as
/// prost writes fields in number order.
fn workflow_id(mut message: &[u8]) -> Result<&str, CorruptRecord> {
    while !message.is_empty() {
        let (tag, wire_type) = encoding::decode_key(&mut message).map_err(corrupt)?;
        if (tag, wire_type) == (WORKFLOW_ID_FIELD, WireType::LengthDelimited) {
            let id = length_delimited(&mut message)?;
            return std::str::from_utf8(id)
                .map_err(|_| CorruptRecord("a workflow id that is not UTF-8".into()));
        }
        encoding::skip_field(wire_type, tag, &mut message, DecodeContext::default())
            .map_err(corrupt)?;
    }
    Err(CorruptRecord("a record without a workflow id".into()))
}

/// The next length-delimited value of `bytes`, which then start after it.
fn length_delimited<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], CorruptRecord> {
    let len = encoding::decode_varint(bytes).map_err(corrupt)?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > bytes.len() {
        return Err(CorruptRecord("a truncated record".into()));
    }
    let (value, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(value)
}

fn corrupt(e: prost::DecodeError) -> CorruptRecord {
    CorruptRecord(e.to_string())
}

/// The workflow's last run as its row's columns keep it (for listing
/// workflows): status, runner, finish time and duration, in milliseconds.
pub(crate) fn last_run_columns(
    record: &WorkflowMetrics,
) -> (Option<String>, Option<String>, Option<i64>, Option<i64>) {
    match &record.last_run {
        Some(last) => (
            Some(last.status().label().to_owned()),
            Some(last.runner_type().label().to_owned()),
            last.finish_time.as_ref().map(from_timestamp),
            last.duration_seconds.map(|s| (s * 1000.0).round() as i64),
        ),
        None => (None, None, None, None),
    }
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::{RunStatus, RunnerType};

    use super::*;
    use crate::aggregate::{self, Finished};

    /// Two records: `a` with a finished run and names to escape, `b` fresh.
    fn two_records() -> (WorkflowMetrics, WorkflowMetrics) {
        let mut a = aggregate::new("id-a", "p|;", "déploiement \"x\"", 1_700_000_000_000);
        aggregate::count(
            &mut a,
            Finished {
                status: RunStatus::Success,
                runner: RunnerType::GithubAction,
                finished_at_ms: 1_700_000_001_000,
                duration_ms: Some(300),
                branch: "",
                run_id: "",
                trace_id: "",
            },
            &[0.1, 1.0],
        );
        (a, aggregate::new("id-b", "default", "b", 1_700_000_000_001))
    }

    #[test]
    fn records_and_pages_round_trip() {
        let (a, b) = two_records();
        assert_eq!(decode(&encode(&a)).expect("decode"), a);
        let page = [encode(&b), encode(&a)].concat();
        assert_eq!(decode_page(&page).expect("page"), [b, a.clone()]);
        assert!(decode(&page).is_err(), "a page is not one record");
        assert!(decode(&encode(&a)[..10]).is_err(), "truncated");
        assert!(decode(&[]).is_err(), "no record");
        assert!(decode_page(&[]).expect("empty page").is_empty());
    }

    #[test]
    fn a_page_splits_into_its_records_as_they_were_stored() {
        let (a, b) = two_records();
        let page = [encode(&b), encode(&a)].concat();
        let mut stored = Vec::new();
        split_page(&page, &mut stored).expect("split");
        let ids: Vec<&str> = stored.iter().map(|r| r.workflow_id).collect();
        assert_eq!(ids, ["id-b", "id-a"]);
        for (record, expected) in stored.iter().zip([&b, &a]) {
            assert_eq!(record.message, expected.encode_to_vec());
        }

        // The id is found wherever it is in the message.
        let mut reframed = ListWorkflowMetricsResponse::default();
        reframed.push_encoded(
            &WorkflowMetrics {
                workflow_id: String::new(),
                ..a.clone()
            }
            .encode_to_vec(),
            &WorkflowMetrics {
                workflow_id: "id-a".into(),
                ..WorkflowMetrics::default()
            }
            .encode_to_vec(),
        );
        let reframed = reframed.encode_to_vec();
        let mut stored = Vec::new();
        split_page(&reframed, &mut stored).expect("split");
        assert_eq!(stored[0].workflow_id, "id-a");

        for corrupt in [
            &page[..page.len() - 1],
            &[0x12, 0x00][..],
            &[0x0a, 0x02, 0x10, 0x01][..],
            &[0x0a, 0x03, 0x0a, 0x01, 0xff][..],
        ] {
            assert!(
                split_page(corrupt, &mut Vec::new()).is_err(),
                "{corrupt:?} is refused"
            );
        }
    }

    #[test]
    fn exemplars_are_stored_apart_and_join_their_record_in_a_page() {
        let (mut a, _) = two_records();
        let exemplar = runplane_api::workflowrun::v1::HistogramExemplars {
            status: RunStatus::Success.into(),
            exemplars: vec![runplane_api::workflowrun::v1::Exemplar {
                bucket: 1,
                run_id: "run-1".into(),
                value: 0.3,
                ..Default::default()
            }],
            ..Default::default()
        };
        a.exemplars = vec![exemplar];
        let (metrics, exemplars) = encode_split(&mut a);
        assert_eq!(a.exemplars.len(), 1, "the record keeps them in memory");
        assert_eq!(decode(&metrics).expect("decode").exemplars, []);
        assert_eq!(
            decode_with_exemplars(&metrics, &exemplars).expect("decode"),
            a
        );
        // Stored apart, then joined as more of the record's fields.
        let mut stored = Vec::new();
        split_page(&exemplars, &mut stored).expect("split");
        assert_eq!(stored[0].workflow_id, "id-a");
        let mut page = ListWorkflowMetricsResponse::default();
        let mut split = Vec::new();
        split_page(&metrics, &mut split).expect("split");
        page.push_encoded(split[0].message, stored[0].message);
        assert_eq!(page.workflows().expect("page"), [a.clone()]);
        // Without exemplars, nothing is stored for them.
        let (_, none) = encode_split(&mut two_records().1);
        assert!(none.is_empty());
    }

    #[test]
    fn a_record_gives_its_last_run_as_the_row_keeps_it() {
        let (a, b) = two_records();
        assert_eq!(
            last_run_columns(&a),
            (
                Some("success".into()),
                Some("GITHUB_ACTION".into()),
                Some(1_700_000_001_000),
                Some(300)
            )
        );
        assert_eq!(last_run_columns(&b), (None, None, None, None));
    }
}
