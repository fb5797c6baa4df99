//! The dynamic batcher: an actor per model that alone owns its queue.
//!
//! Rows arrive on a bounded mpsc channel (full: `Overloaded`, HTTP 429).
//! The actor takes the first row, then gathers more (ARCHITECTURE.md,
//! "Batch filling"): while every instance is busy, each arriving row joins,
//! up to `max_batch`; once a slot is free, the queued rows join and the
//! batch closes when full, when the rows expected are there (those that
//! waited plus the last run's callers, who send their next row right after
//! their answer; a run of one row sets no expectation), or when no row came
//! for `max_delay`, at the latest the last run's duration after the slot
//! was free. Rows are grouped by their non-batch shapes (only equal shapes
//! stack), each group is stacked along a new first dimension and run on one
//! of the model's run threads (`threads.rs`, below the server's priority)
//! while holding an instance slot and the VRAM units; the outputs are split
//! back to each row's oneshot. The actor never waits for a run to finish,
//! only for a slot to start one, so the next batch fills while the previous
//! one computes.
//!
//! A model whose first dimension is fixed (not batchable) gets each job run
//! on its own, with the tensors as given.
//!
//! A text model's rows are token sequences of different lengths: with
//! [`Padding`], rows are not grouped but right-padded with zeros to the
//! batch's longest row (the attention mask is padded with zeros too, so
//! padding does not change real tokens' results), and a batch also closes
//! when its padded size would pass `max_batch_tokens`; the row that did not
//! fit opens the next batch. Each row's outputs are cut back to its own
//! length along every dynamic token dimension, so a row's result (and its
//! cache entry) never depends on the rows it happened to share a batch with.

mod stack;

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;
use tokio::{
    sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use self::stack::{stack, unpad, unstack};
use super::{backend::Backend, budget::Budget, tensor::Tensor, threads::RunThreads};
use crate::{
    config::ModelLive,
    error::{Error, Result},
    events::{Event, Events},
    infer::metrics::ModelSeries,
};

/// What is fixed about how one model batches. The rest (`max_batch`,
/// `max_delay_ms`, `queue`, `max_batch_tokens`) is read from the model's
/// live knobs for every batch and every row, so a reload applies at once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub model: String,
    pub batchable: bool,
    /// Pad variable-length rows (text) instead of grouping them by shape.
    pub padded: bool,
    pub vram_units: u32,
    pub instances: usize,
    /// How much lower than the server's the run threads' priority is.
    pub nice: u8,
}

/// Hard cap of a batcher channel; the live `queue` setting bounds it below.
const CHANNEL_CAP: usize = 1 << 16;

/// The live batching knobs of one model.
struct Knobs {
    max_batch: usize,
    max_delay: Duration,
    queue: usize,
    max_batch_tokens: Option<usize>,
}

fn knobs(live: &watch::Receiver<ModelLive>, settings: &Settings) -> Knobs {
    let m = *live.borrow();
    Knobs {
        max_batch: if settings.batchable { m.max_batch } else { 1 },
        max_delay: m.max_delay(),
        queue: m.queue,
        max_batch_tokens: settings.padded.then_some(m.max_batch_tokens),
    }
}

struct Job {
    /// One tensor per model input, in the model's input order; without
    /// the batch dimension when the model is batchable.
    inputs: Vec<Tensor>,
    reply: oneshot::Sender<Result<Vec<Tensor>>>,
}

/// Handle to a model's batcher; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    series: ModelSeries,
    settings: Arc<Settings>,
    live: watch::Receiver<ModelLive>,
}

impl Batcher {
    /// Start the model's run threads and its batcher actor.
    pub fn spawn(
        backend: Arc<Backend>,
        settings: Settings,
        budget: Budget,
        series: ModelSeries,
        events: Events,
        live: watch::Receiver<ModelLive>,
    ) -> Result<Batcher> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAP);
        let threads = RunThreads::spawn(&settings.model, settings.instances, settings.nice)?;
        let settings = Arc::new(settings);
        tokio::spawn(
            Actor {
                rx,
                backend,
                threads: Arc::new(threads),
                slots: Arc::new(Semaphore::new(settings.instances)),
                last_run: Arc::default(),
                settings: settings.clone(),
                budget,
                series: series.clone(),
                events,
                live: live.clone(),
            }
            .run(),
        );
        Ok(Batcher {
            tx,
            series,
            settings,
            live,
        })
    }

    /// Queue one row (or whole request, for a fixed-batch model) and wait
    /// for its outputs. Refused at once when the queue is full.
    pub async fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let queue = knobs(&self.live, &self.settings).queue;
        // Reserve a place first (`inc` returns the depth before it), so
        // concurrent callers can never push the depth past the bound.
        if self.series.queue_depth.inc() >= queue as i64 {
            self.series.queue_depth.dec();
            return Err(Error::Overloaded("the model's queue"));
        }
        let (reply, answer) = oneshot::channel();
        if let Err(e) = self.tx.try_send(Job { inputs, reply }) {
            self.series.queue_depth.dec();
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => Error::Overloaded("the model's queue"),
                mpsc::error::TrySendError::Closed(_) => Error::ShuttingDown,
            });
        }
        answer.await.map_err(|_| {
            Error::Compute(format!(
                "model `{}` dropped the request",
                self.settings.model
            ))
        })?
    }
}

struct Actor {
    rx: mpsc::Receiver<Job>,
    backend: Arc<Backend>,
    threads: Arc<RunThreads>,
    slots: Arc<Semaphore>,
    /// The run that finished last: its callers may be about to send their
    /// next rows.
    last_run: Arc<Mutex<LastRun>>,
    settings: Arc<Settings>,
    budget: Budget,
    series: ModelSeries,
    events: Events,
    live: watch::Receiver<ModelLive>,
}

/// Rows and duration of a model's last run.
#[derive(Debug, Clone, Copy, Default)]
struct LastRun {
    rows: usize,
    took: Duration,
}

/// The batch being gathered.
struct Batch {
    jobs: Vec<Job>,
    /// The longest row's length (text rows: tokens).
    longest: usize,
    /// No more rows may join: `max_batch` rows, the token budget reached,
    /// or the channel closed.
    full: bool,
}

impl Batch {
    /// Take `job` if it fits; else hand it back (it opens the next batch).
    /// The first row always fits.
    fn offer(&mut self, job: Job, knobs: &Knobs) -> Option<Job> {
        let grown = self.longest.max(row_len(&job));
        if !self.jobs.is_empty()
            && knobs
                .max_batch_tokens
                .is_some_and(|max| grown * (self.jobs.len() + 1) > max)
        {
            self.full = true;
            return Some(job);
        }
        self.longest = grown;
        self.jobs.push(job);
        self.full = self.jobs.len() >= knobs.max_batch;
        None
    }
}

impl Actor {
    async fn run(mut self) {
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(job) => job,
                None => match self.rx.recv().await {
                    Some(job) => {
                        self.series.queue_depth.dec();
                        job
                    }
                    None => break,
                },
            };
            let (mut jobs, slot) = self.gather(first, &mut carry).await;
            // Rows whose callers all gave up need no computing.
            jobs.retain(|job| !job.reply.is_closed());
            if jobs.is_empty() {
                continue;
            }
            if self.settings.padded {
                self.start(jobs, slot).await;
                continue;
            }
            let mut slot = Some(slot);
            for group in group_by_shape(jobs) {
                let slot = match slot.take() {
                    Some(slot) => slot,
                    None => self.slot().await,
                };
                self.start(group, slot).await;
            }
        }
    }

    /// Gather one batch from `first` on (see the module docs); returns it
    /// with the instance slot it runs on. A row that would pass the token
    /// budget is left in `carry`.
    async fn gather(
        &mut self,
        first: Job,
        carry: &mut Option<Job>,
    ) -> (Vec<Job>, OwnedSemaphorePermit) {
        let knobs = knobs(&self.live, &self.settings);
        let mut batch = Batch {
            longest: 0,
            jobs: Vec::with_capacity(knobs.max_batch),
            full: false,
        };
        *carry = batch.offer(first, &knobs);
        // A slot free at once: the model was idle, so the first row may be
        // one of the last run's callers coming back, as may the rest (a run
        // of one row tells nothing about how many callers there are).
        let mut slot = self.slots.clone().try_acquire_owned().ok();
        let last = *self.last_run.lock();
        let mut expected = if last.rows > 1 { last.rows } else { usize::MAX };
        // Once a slot is free: wait while rows keep coming (no gap of
        // `max_delay`), but never longer than the last run took.
        let mut arrived = Instant::now();
        let mut give_up = arrived + knobs.max_delay.max(last.took);
        let deadline = tokio::time::sleep_until(arrived + knobs.max_delay);
        tokio::pin!(deadline);
        loop {
            while !batch.full {
                match self.rx.try_recv() {
                    Ok(job) => {
                        self.series.queue_depth.dec();
                        *carry = batch.offer(job, &knobs);
                        arrived = Instant::now();
                    }
                    Err(_) => break,
                }
            }
            if slot.is_some() && (batch.full || batch.jobs.len() >= expected) {
                break;
            }
            deadline
                .as_mut()
                .reset((arrived + knobs.max_delay).min(give_up));
            tokio::select! {
                biased;
                permit = self.slots.clone().acquire_owned(), if slot.is_none() => {
                    slot = Some(permit.expect("the slot semaphore is never closed"));
                    // The rows gathered so far waited during the run that
                    // just ended; its callers may come back as well.
                    let last = *self.last_run.lock();
                    expected = batch.jobs.len() + last.rows;
                    arrived = Instant::now();
                    give_up = arrived + knobs.max_delay.max(last.took);
                }
                job = self.rx.recv(), if !batch.full => match job {
                    Some(job) => {
                        self.series.queue_depth.dec();
                        *carry = batch.offer(job, &knobs);
                        arrived = Instant::now();
                    }
                    None => batch.full = true,
                },
                _ = &mut deadline, if slot.is_some() => break,
            }
        }
        let slot = slot.expect("the loop ends only with a slot");
        (batch.jobs, slot)
    }

    /// Wait for a free instance slot.
    async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slot semaphore is never closed")
    }

    /// Wait for the VRAM units, then run `jobs` on a run thread while
    /// holding `slot`; the reply happens in its own task.
    async fn start(&self, jobs: Vec<Job>, slot: OwnedSemaphorePermit) {
        let permit = self.budget.acquire(self.settings.vram_units).await;
        let (backend, threads, series, events) = (
            self.backend.clone(),
            self.threads.clone(),
            self.series.clone(),
            self.events.clone(),
        );
        let last_run = self.last_run.clone();
        let model = self.settings.model.clone();
        let batchable = self.settings.batchable;
        let pad = self.settings.padded;
        tokio::spawn(async move {
            let rows = jobs.len();
            let inputs: Vec<Vec<Tensor>> = jobs.iter().map(|j| j.inputs.clone()).collect();
            let started = std::time::Instant::now();
            let outcome = threads
                .run(move || {
                    if !batchable {
                        return vec![backend.run(&inputs[0])];
                    }
                    let run = |rows: &[Vec<Tensor>]| -> Result<Vec<Vec<Tensor>>> {
                        let out = backend.run(&stack(rows, pad))?;
                        let per_row = unstack(out, rows.len())?;
                        if !pad {
                            return Ok(per_row);
                        }
                        let longest = rows.iter().map(|r| r[0].shape[0]).max().unwrap_or(0);
                        Ok(per_row
                            .into_iter()
                            .zip(rows)
                            .map(|(out, row)| {
                                unpad(out, row[0].shape[0], longest, backend.outputs())
                            })
                            .collect())
                    };
                    match run(&inputs) {
                        Ok(per_row) => per_row.into_iter().map(Ok).collect(),
                        // One bad row must not fail the rows batched with it:
                        // run each alone, so only the culprit gets the error.
                        Err(_) if rows > 1 => inputs
                            .iter()
                            .map(|row| Ok(run(std::slice::from_ref(row))?.remove(0)))
                            .collect(),
                        Err(e) => vec![Err(e)],
                    }
                })
                .await
                .unwrap_or_else(|e| vec![Err(e); rows]);
            let took = started.elapsed();
            *last_run.lock() = LastRun { rows, took };
            drop((permit, slot));
            series.runs.inc();
            series.rows.inc_by(rows as u64);
            series.batch_size.observe(rows as f64);
            let seconds = took.as_secs_f64();
            series.run_seconds.observe(seconds);
            events.emit(Event::ModelRun {
                model,
                batch_size: rows,
                seconds,
                ok: outcome.iter().all(Result::is_ok),
            });
            for (job, outputs) in jobs.into_iter().zip(outcome) {
                let _ = job.reply.send(outputs);
            }
        });
    }
}

/// Split jobs into groups whose inputs have equal shapes, keeping order.
fn group_by_shape(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups: Vec<Vec<Job>> = Vec::new();
    let mut index: HashMap<Vec<Vec<u64>>, usize> = HashMap::new();
    for job in jobs {
        let shapes: Vec<Vec<u64>> = job.inputs.iter().map(|t| t.shape.clone()).collect();
        let at = *index.entry(shapes).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[at].push(job);
    }
    groups
}

/// Length of a row along its first dimension (tokens, for text rows).
fn row_len(job: &Job) -> usize {
    job.inputs
        .first()
        .and_then(|t| t.shape.first())
        .map_or(1, |d| *d as usize)
}

#[cfg(test)]
mod tests {
    use super::{stack::tests::t, *};

    #[test]
    fn a_batch_takes_rows_until_full_or_over_the_token_budget() {
        let job = |len: usize| Job {
            inputs: vec![t(&[len as u64], &vec![0; len])],
            reply: oneshot::channel().0,
        };
        let knobs = Knobs {
            max_batch: 3,
            max_delay: Duration::ZERO,
            queue: 8,
            max_batch_tokens: Some(8),
        };
        let empty = || Batch {
            jobs: Vec::new(),
            longest: 0,
            full: false,
        };
        let mut batch = empty();
        assert!(
            batch.offer(job(9), &knobs).is_none(),
            "the first row always fits"
        );
        assert!(batch.offer(job(1), &knobs).is_some(), "2 x 9 tokens > 8");
        assert!(batch.full);
        let mut batch = empty();
        for _ in 0..3 {
            assert!(batch.offer(job(2), &knobs).is_none());
        }
        assert!(batch.full, "max_batch rows");
    }

    #[test]
    fn groups_keep_equal_shapes_together_in_order() {
        let job = |shape: &[u64]| Job {
            inputs: vec![t(shape, &[])],
            reply: oneshot::channel().0,
        };
        let groups = group_by_shape(vec![job(&[2]), job(&[3]), job(&[2])]);
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1]);
    }
}
