//! Group commit of issuance requests: the requests waiting together run in one transaction
//! (see [`super::segments`]), each answered as if it had been alone.

use std::sync::Arc;

use persistence::PersistenceError;

use super::{Attempt, IssueRequest, IssueResult, Segment, issue, issue_segments};
use crate::app::AppError;
use crate::app::AppState;
use crate::engine::group_commit::{Batch, Job, Overlap};

/// The most items one group-committed batch of issuance requests carries; a larger request
/// runs in a batch of its own.
pub const BATCH_ITEMS_MAX: usize = 1_000;

/// An issuance request (single or bulk) waiting to be group-committed with others.
#[derive(Debug)]
pub struct IssueJob {
    pub org_id: i64,
    pub request: IssueRequest,
}

impl Batch for IssueJob {
    type Context = AppState;
    type Error = AppError;
    type Answer = IssueResult;

    async fn run(state: Arc<AppState>, jobs: Vec<Job<Self>>, _: Overlap) -> Vec<Job<Self>> {
        // A request sharing a key with an earlier one of the batch waits for the next batch
        // (then it replays), as a concurrent duplicate would; so does one that would take the
        // batch past BATCH_ITEMS_MAX items.
        let mut seen: std::collections::HashSet<(i64, String)> = std::collections::HashSet::new();
        let (mut batch, mut carried) = (Vec::new(), Vec::new());
        let mut items = 0;
        for job in jobs {
            let keys: Vec<(i64, String)> = job
                .request
                .request
                .items
                .iter()
                .map(|i| (job.request.org_id, i.request_id.as_str().to_owned()))
                .collect();
            let fits = batch.is_empty() || items + keys.len() <= BATCH_ITEMS_MAX;
            if fits && keys.iter().all(|k| !seen.contains(k)) {
                items += keys.len();
                seen.extend(keys);
                batch.push(job);
            } else {
                carried.push(job);
            }
        }
        let segments: Vec<Segment> = batch
            .iter()
            .map(|j| Segment {
                org_id: j.request.org_id,
                request: &j.request.request,
            })
            .collect();
        let mut conflicts = 0;
        let outcome = loop {
            match issue_segments(&state, &segments).await {
                Err(Attempt::Db(PersistenceError::Conflict(_))) if conflicts < 2 => conflicts += 1,
                other => break other,
            }
        };
        let answers: Vec<Result<IssueResult, AppError>> = match outcome {
            Ok(results) => results,
            // Alone, the request would have got this very answer.
            Err(e) if batch.len() == 1 => vec![Err(e.into_api(&batch[0].request.request))],
            Err(Attempt::Db(e)) if e.is_transient() => {
                tracing::warn!(error = %e, size = batch.len(), "group commit of issuances failed");
                let message = e.to_string();
                batch
                    .iter()
                    .map(|_| {
                        Err(AppError::from(match &e {
                            PersistenceError::CommitUnknown(_) => {
                                PersistenceError::CommitUnknown(message.clone())
                            }
                            _ => PersistenceError::Unavailable(message.clone()),
                        }))
                    })
                    .collect()
            }
            Err(e) => {
                // Not to be pinned on one request from here: let each find out alone.
                tracing::info!(error = ?e, size = batch.len(), "group commit: issuing each request alone");
                futures_util::future::join_all(
                    batch
                        .iter()
                        .map(|j| issue(&state, j.request.org_id, &j.request.request)),
                )
                .await
            }
        };
        for (job, answer) in batch.into_iter().zip(answers) {
            job.answer(answer);
        }
        carried
    }
}
