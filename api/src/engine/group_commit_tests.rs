//! The writer's schedule, with batches whose commit the test lets through one at a time: the
//! next batch starts while one commits, no more batches commit at once than `overlap` allows,
//! a request sharing a footprint with a batch in flight waits for it, and every request is
//! answered only when its own batch has ended.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{Batch, Job, Overlap, Queue, Unanswered, Writers};

/// What the batches did, and the gate their commits wait at.
struct Lab {
    log: Mutex<Vec<String>>,
    commits: Semaphore,
}

impl Lab {
    fn said(&self, line: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l == line)
    }
}

/// A request: its number and its footprint.
struct Step(u32, u64);

#[derive(Debug)]
struct Failed;

impl From<Unanswered> for Failed {
    fn from(_: Unanswered) -> Self {
        Failed
    }
}

impl Batch for Step {
    type Context = Lab;
    type Answer = u32;
    type Error = Failed;

    fn footprint(&self) -> Vec<u64> {
        vec![self.1]
    }

    async fn run(lab: Arc<Lab>, jobs: Vec<Job<Self>>, overlap: Overlap) -> Vec<Job<Self>> {
        let ids: Vec<String> = jobs.iter().map(|j| j.request.0.to_string()).collect();
        let ids = ids.join(",");
        lab.log.lock().unwrap().push(format!("start {ids}"));
        overlap.locked();
        lab.commits.acquire().await.unwrap().forget();
        lab.log.lock().unwrap().push(format!("end {ids}"));
        for job in jobs {
            let id = job.request.0;
            job.answer(Ok(id));
        }
        Vec::new()
    }
}

fn lab_and_queue(overlap: usize) -> (Arc<Lab>, Arc<Queue<Step>>) {
    lab_and_queue_from(overlap, 1)
}

fn lab_and_queue_from(overlap: usize, overlap_from: usize) -> (Arc<Lab>, Arc<Queue<Step>>) {
    let lab = Arc::new(Lab {
        log: Mutex::new(Vec::new()),
        commits: Semaphore::new(0),
    });
    let queue = Queue::spawn(
        Arc::downgrade(&lab),
        Writers {
            max_batch: 8,
            writers: 1,
            overlap,
            overlap_from,
            deadline: Duration::from_secs(30),
        },
    );
    (lab, Arc::new(queue))
}

/// Submits `step` on a task of its own.
fn submit(queue: &Arc<Queue<Step>>, step: Step) -> tokio::task::JoinHandle<u32> {
    let queue = queue.clone();
    tokio::spawn(async move { queue.submit(step).await.expect("an answer") })
}

/// Waits (up to 10 s) until the lab has said `line`.
async fn until(lab: &Lab, line: &str) {
    for _ in 0..10_000 {
        if lab.said(line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never said {line:?}: {:?}", lab.log.lock().unwrap());
}

/// Gives the writer time to do what it should not.
async fn a_while() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn the_next_batch_runs_while_one_commits_and_no_more_than_overlap_commit_at_once() {
    let (lab, queue) = lab_and_queue(1);
    let first = submit(&queue, Step(1, 1));
    until(&lab, "start 1").await;
    let second = submit(&queue, Step(2, 2));
    until(&lab, "start 2").await;
    // Two batches in flight, the most `overlap` 1 allows. The third waits.
    let third = submit(&queue, Step(3, 3));
    a_while().await;
    assert!(!lab.said("start 3"), "{:?}", lab.log.lock().unwrap());
    assert!(!first.is_finished() && !second.is_finished());
    lab.commits.add_permits(1);
    assert_eq!(first.await.unwrap(), 1);
    until(&lab, "start 3").await;
    assert!(!second.is_finished(), "answered before its commit");
    lab.commits.add_permits(2);
    assert_eq!(second.await.unwrap(), 2);
    assert_eq!(third.await.unwrap(), 3);
}

#[tokio::test]
async fn a_request_that_meets_a_batch_in_flight_waits_for_it() {
    let (lab, queue) = lab_and_queue(1);
    let first = submit(&queue, Step(1, 7));
    until(&lab, "start 1").await;
    let same = submit(&queue, Step(2, 7));
    a_while().await;
    let other = submit(&queue, Step(3, 8));
    until(&lab, "start 3").await;
    assert!(!lab.said("start 2"), "{:?}", lab.log.lock().unwrap());
    lab.commits.add_permits(1);
    assert_eq!(first.await.unwrap(), 1);
    until(&lab, "start 2").await;
    lab.commits.add_permits(2);
    assert_eq!(other.await.unwrap(), 3);
    assert_eq!(same.await.unwrap(), 2);
}

#[tokio::test]
async fn without_overlap_a_batch_waits_for_the_last_to_end() {
    let (lab, queue) = lab_and_queue(0);
    let first = submit(&queue, Step(1, 1));
    until(&lab, "start 1").await;
    let second = submit(&queue, Step(2, 2));
    a_while().await;
    assert!(!lab.said("start 2"), "{:?}", lab.log.lock().unwrap());
    lab.commits.add_permits(1);
    assert_eq!(first.await.unwrap(), 1);
    until(&lab, "start 2").await;
    lab.commits.add_permits(1);
    assert_eq!(second.await.unwrap(), 2);
}

#[tokio::test]
async fn beside_a_batch_in_flight_a_batch_starts_only_with_enough_requests() {
    let (lab, queue) = lab_and_queue_from(1, 2);
    let first = submit(&queue, Step(1, 1));
    until(&lab, "start 1").await;
    let second = submit(&queue, Step(2, 2));
    a_while().await;
    assert!(!lab.said("start 2"), "{:?}", lab.log.lock().unwrap());
    let third = submit(&queue, Step(3, 3));
    until(&lab, "start 2,3").await;
    lab.commits.add_permits(2);
    assert_eq!(first.await.unwrap(), 1);
    assert_eq!(second.await.unwrap(), 2);
    assert_eq!(third.await.unwrap(), 3);
}
