//! What the ingestor's handles, its worker, its request tasks and, with a
//! spool, its pump share: the intake, where failures go, the counters, the
//! delivery run, the lifecycle, and the spool's side ([`SpoolLane`]).

use std::{
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::Duration,
};

use tokio::sync::{Notify, oneshot, watch};
use tokio_util::task::TaskTracker;

use super::{
    batch::Batch,
    intake::Intake,
    report::{Counters, Failures},
};
use crate::{delivery::Delivery, delivery::cancel::Phase, error::Error, spool::Spool};

/// What the ingestor's parts share.
pub(super) struct Shared {
    pub intake: Intake,
    pub failures: Failures,
    pub counters: Arc<Counters>,
    pub delivery: Delivery,
    /// The lifecycle: running, or draining until an optional deadline.
    pub phase: watch::Sender<Phase>,
    /// The worker, the pump and every request task: all done means shut
    /// down.
    pub tasks: TaskTracker,
    pub flush_interval: Duration,
    /// The spool, when the ingestor has one: items are written there by
    /// `enqueue` and read back into the intake by the pump.
    pub spool: Option<SpoolLane>,
}

/// The spool's side of an ingestor; see [`spooled`](super::spooled).
pub(super) struct SpoolLane {
    pub spool: Spool,
    /// How long an item may keep failing for now before it finally fails.
    pub max_age: Duration,
    /// Records written since the spool was opened. With those it held when
    /// opened (`SpoolStats::recovered`), what a flush waits for to be in
    /// the intake.
    pub written: AtomicU64,
    /// Records added to the intake: held by `enqueue`, or read back by the
    /// pump. Counted before `written`, so a flush that counts a record
    /// finds it here once it is in the intake.
    pub admitted: AtomicU64,
    /// Flushes waiting for the pump, with the count of records each waits
    /// for.
    pub flushes: Mutex<Flushes>,
    /// Wakes the pump: a flush was asked for, or items wait for a retry.
    pub wake: Notify,
    /// Where `try_track`'s writes complete (it may be called outside the
    /// runtime).
    pub runtime: tokio::runtime::Handle,
}

/// Flushes waiting for the pump; refused once it has stopped.
#[derive(Default)]
pub(super) struct Flushes {
    pub waiting: Vec<(u64, oneshot::Sender<()>)>,
    pub closed: bool,
}

impl Shared {
    /// Hands back a batch that will never be sent, with `error`. Items read
    /// back from the spool are not failed: they stay in it, for the next
    /// opening.
    pub(super) fn fail_unsent(&self, batch: Box<dyn Batch>, error: Error) {
        let items = batch.len();
        self.counters.finished(items, false, false, 0);
        match batch.spooled() {
            Ok(_left_in_the_spool) => self.intake.release(items),
            Err(batch) => {
                let held = self.intake.held(items);
                self.failures.hand_over(batch.fail(error), held);
            }
        }
    }
}
