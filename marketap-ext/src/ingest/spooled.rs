//! The ingestor with a spool: `track` writes the item into the spool and
//! returns once it is written; the pump reads records back into the
//! intake, never more than its capacity, when they could not stay in memory
//! (the intake was full, or the spool was opened with records in it); a request task acknowledges what
//! is done with (delivered, or finally failed and handed over) and keeps
//! what failed for now in the spool, sending it again with capped backoff
//! for as long as the outage lasts, up to the spool's `max_age`.
//!
//! - [`enqueue`] and [`try_enqueue`]: the write, and what its failure
//!   hands back. While the intake has room, the item also stays in memory
//!   (the spool *holds* it for its caller), so a spool that keeps up costs
//!   one serialisation and a write per item, and no read back.
//! - [`pump`]: the task that reads the spool lazily into the intake's
//!   per-kind batches (the room of each item read is taken first), and
//!   passes flushes on once it has read what they wait for.
//! - [`request`] and [`retry_later`]: a spooled batch's outcomes, and the
//!   wait between its tries. A 401 is a failure for now too: the key may be
//!   fixed and the process restarted while the items wait.
//!
//! At shutdown, whatever is not delivered stays in the spool: it is not
//! failed, and the next ingestor opened on the spool delivers it.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use futures::{
    FutureExt,
    future::{BoxFuture, Fuse, FusedFuture},
};
use tokio::sync::oneshot;

use super::{
    EnqueueError,
    batch::{Spooled, Tag},
    shared::{Shared, SpoolLane},
};
use crate::{
    delivery::encoded::Encoded,
    delivery::{cancel::Phase, throttle::Slot},
    error::Error,
    lock::lock,
    model::item::{Device, Event, UserDeletion, UserProfile},
    model::kind::{Item, KINDS},
    report::FailedBatch,
    spool::{SpoolError, Stored, Written},
};

/// The first wait before a spooled batch that failed for now is sent again.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest such wait.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The spool's side of `shared`, which the ingestor has when this module's
/// functions are called.
fn spool_lane(shared: &Shared) -> &SpoolLane {
    shared
        .spool
        .as_ref()
        .expect("spooled paths run only for an ingestor with a spool")
}

/// What both writes start from: `item` with its JSON, as the spool keeps
/// it (the API's own), or the item handed back when intake is closed or it
/// cannot be serialised.
fn prepared<T: Item>(shared: &Shared, item: T) -> Result<(T, Vec<u8>), EnqueueError<T>> {
    if let Some(closed) = shared.intake.closed() {
        return Err(closed.refuse(item));
    }
    // At most its bound, known from when it was built: one allocation.
    let mut body = Vec::with_capacity(item.wire_bound());
    match serde_json::to_writer(&mut body, &item) {
        Ok(()) => Ok((item, body)),
        Err(error) => {
            shared.counters.write_error();
            let lane = spool_lane(shared);
            let error = SpoolError::io(
                "serialise an item for",
                lane.spool.path(),
                std::io::Error::other(error),
            );
            Err(EnqueueError::Spool(item, Box::new(error)))
        }
    }
}

/// Writes `item` into the spool: waits while the spool is at its byte
/// cap, then until the item is written (and synced, with
/// [`SyncPolicy::Always`](crate::spool::SyncPolicy::Always)). With room in
/// the intake, the item stays in memory too ([`keep`]).
pub(super) async fn enqueue<T: Item>(shared: &Shared, item: T) -> Result<(), EnqueueError<T>> {
    let lane = spool_lane(shared);
    let (item, body) = prepared(shared, item)?;
    let room = shared.intake.try_take_one();
    match lane.spool.append(T::INDEX as u8, body, room).await {
        Ok(written) => {
            keep(shared, lane, item, written, room);
            Ok(())
        }
        Err(error) => {
            if room {
                shared.intake.release(1);
            }
            if error == SpoolError::Closed {
                return Err(shared.intake.refuse(item));
            }
            shared.counters.write_error();
            Err(EnqueueError::Spool(item, Box::new(error)))
        }
    }
}

/// Writes `item` into the spool if it is under its byte cap now; hands it
/// back otherwise. The write completes in a task of its own: if it fails,
/// the item goes where failures go, with [`Error::Spool`].
pub(super) fn try_enqueue<T: Item>(shared: &Arc<Shared>, item: T) -> Result<(), EnqueueError<T>> {
    let lane = spool_lane(shared);
    let (item, body) = prepared(shared, item)?;
    let room = shared.intake.try_take_one();
    let Ok(write) = lane.spool.try_append(T::INDEX as u8, body, room) else {
        if room {
            shared.intake.release(1);
        }
        return Err(EnqueueError::Full(item));
    };
    let owner = shared.clone();
    let writing = async move {
        let lane = spool_lane(&owner);
        match write.await {
            Ok(written) => keep(&owner, lane, item, written, room),
            Err(error) => {
                if room {
                    owner.intake.release(1);
                }
                if error != SpoolError::Closed {
                    owner.counters.write_error();
                }
                tracing::error!(error = %crate::ErrorChain(&error), "marketap ingestor: an item taken by try_track could not be written to the spool; it goes where failures go");
                let failed = FailedBatch {
                    items: vec![item],
                    error: Error::Spool(error),
                    attempts: 0,
                };
                owner.failures.hand_over(T::undelivered(failed), ());
            }
        }
    };
    shared.tasks.spawn_on(writing, &lane.runtime);
    Ok(())
}

/// After `item` is written: when the spool lets its caller hold it (there
/// was `room` in the intake, and the reader's window allows), the item
/// goes straight into the intake, never read back and parsed while this
/// ingestor runs; otherwise the pump reads it back when there is room.
fn keep<T: Item>(shared: &Shared, lane: &SpoolLane, item: T, written: Written, room: bool) {
    if let Some(json) = written.body {
        let tag = Tag {
            seq: written.seq,
            enqueued_at: written.enqueued_at,
        };
        if shared
            .intake
            .push_spooled(Encoded { item, json }, tag)
            .is_err()
        {
            // Intake closed: the record stays in the spool for the next
            // opening.
            shared.intake.release(1);
        }
        lane.admitted.fetch_add(1, Relaxed);
    } else if room {
        shared.intake.release(1);
    }
    lane.written.fetch_add(1, Relaxed);
}

/// Waits until every item written before the call has been delivered, has
/// finally failed, or waits in the spool for a retry (while items wait
/// for one, the outage is on: what the pump has not read yet waits too).
pub(super) async fn flush(shared: &Shared) {
    let lane = spool_lane(shared);
    // What the spool held when opened counts once its thread has checked it.
    lane.spool.opened().await;
    let (done, waiter) = oneshot::channel();
    {
        let mut flushes = lock(&lane.flushes);
        if flushes.closed {
            return;
        }
        let written = lane.spool.stats().recovered + lane.written.load(Relaxed);
        flushes.waiting.push((written, done));
    }
    lane.wake.notify_one();
    // A dropped sender (the pump or the worker stopped) ends the wait too.
    let _ = waiter.await;
}

/// Reads a record's body into its kind's item and adds it to the intake;
/// an error says why it cannot be read.
type Admit = fn(&Shared, Vec<u8>, Tag) -> Result<(), serde_json::Error>;

/// By kind index ([`sealed::Kind::INDEX`](crate::model::kind::sealed::Kind::INDEX)).
const ADMIT: [Admit; KINDS] = [
    admit::<Event>,
    admit::<UserProfile>,
    admit::<Device>,
    admit::<UserDeletion>,
];
const _: () = assert!(
    <Event as crate::model::kind::sealed::Kind>::INDEX == 0
        && <UserProfile as crate::model::kind::sealed::Kind>::INDEX == 1
        && <Device as crate::model::kind::sealed::Kind>::INDEX == 2
        && <UserDeletion as crate::model::kind::sealed::Kind>::INDEX == 3
);

fn admit<T: Item>(shared: &Shared, body: Vec<u8>, tag: Tag) -> Result<(), serde_json::Error> {
    let item = T::from_spool(&body)?;
    if shared
        .intake
        .push_spooled(Encoded { item, json: body }, tag)
        .is_err()
    {
        // Intake closed: the record stays in the spool for the next opening.
        shared.intake.release(1);
    }
    Ok(())
}

/// Starts the pump of `shared` on `runtime`.
pub(super) fn start_pump(shared: &Arc<Shared>, runtime: &tokio::runtime::Handle) {
    shared.tasks.spawn_on(pump(shared.clone()), runtime);
}

/// Room taken for up to a batch of records, and the records read.
type Reading = Fuse<BoxFuture<'static, Option<(usize, Vec<Stored>)>>>;

/// Reads the spool into the intake, oldest first, taking each record's
/// room in the intake first, so memory stays within the capacity however
/// much the spool holds. Stops when the ingestor drains.
async fn pump(shared: Arc<Shared>) {
    let lane = spool_lane(&shared);
    let mut phase = shared.phase.subscribe();
    let max = shared.intake.max_batch_size();
    // Kept across wake-ups: a read, once asked for, must be taken whole.
    let mut reading: Reading = Fuse::terminated();
    let interval = shared.flush_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *phase.borrow_and_update() != Phase::Running {
            break;
        }
        pass_flushes(&shared, lane);
        if reading.is_terminated() {
            let shared = shared.clone();
            reading = async move {
                let room = shared.intake.take_room(max).await?;
                let records = spool_lane(&shared).spool.read(room).await;
                Some((room, records))
            }
            .boxed()
            .fuse();
        }
        tokio::select! {
            _ = phase.changed() => {}
            () = lane.wake.notified() => {}
            _ = tick.tick() => {}
            got = &mut reading => {
                let Some((room, records)) = got else { break };
                if records.is_empty() {
                    // The spool closed.
                    break;
                }
                shared.intake.release(room - records.len());
                lane.admitted.fetch_add(records.len() as u64, Relaxed);
                for record in records {
                    take_in(&shared, lane, record);
                }
            }
        }
    }
    // Flushes asked for from now on return at once; those waiting do too.
    let waiting = {
        let mut flushes = lock(&lane.flushes);
        flushes.closed = true;
        std::mem::take(&mut flushes.waiting)
    };
    drop(waiting);
}

/// Adds a record read back to the intake; one that cannot be read as an
/// item is logged, counted and acknowledged, never dropped silently.
fn take_in(shared: &Shared, lane: &SpoolLane, record: Stored) {
    let tag = Tag {
        seq: record.seq,
        enqueued_at: record.enqueued_at,
    };
    let bytes = record.body.len();
    let admitted = match ADMIT.get(usize::from(record.kind)) {
        Some(admit) => admit(shared, record.body, tag).map_err(|error| error.to_string()),
        None => Err(format!("unknown kind {}", record.kind)),
    };
    if let Err(why) = admitted {
        tracing::error!(
            seq = record.seq,
            kind = record.kind,
            bytes,
            why,
            "marketap ingestor: a spool record could not be read back as an item; it is removed from the spool and counted as failed and unreported"
        );
        shared.counters.lost(1);
        shared.intake.release(1);
        lane.spool.ack(vec![record.seq]);
    }
}

/// Passes the flushes whose records are all in the intake (or that wait
/// during an outage, or for an empty spool) to the intake, after the
/// batches of those records: the worker releases them once those batches
/// are done.
fn pass_flushes(shared: &Shared, lane: &SpoolLane) {
    let admitted = lane.admitted.load(Relaxed);
    let mut flushes = lock(&lane.flushes);
    if flushes.waiting.is_empty() {
        return;
    }
    let outage = shared.counters.waiting() > 0;
    let empty = lane.spool.stats().items == 0;
    let ready: Vec<_> = flushes
        .waiting
        .extract_if(.., |(target, _)| outage || empty || admitted >= *target)
        .map(|(_, done)| done)
        .collect();
    drop(flushes);
    for done in ready {
        // Refused once intake is closed: the dropped sender ends the wait.
        let _ = shared.intake.flush(done);
    }
}

/// The room of spooled items that stay in the spool: given back when a
/// request task ends before its outcome (the runtime shut down, or a
/// panic). Nothing is lost: the next opening of the spool delivers them.
struct LeftBehind<'a> {
    shared: &'a Shared,
    items: usize,
}

impl Drop for LeftBehind<'_> {
    fn drop(&mut self) {
        let Self { shared, items } = *self;
        tracing::warn!(
            items,
            "marketap ingestor: a request ended before its outcome (the runtime shut down, or a panic); its items stay in the spool"
        );
        shared.intake.release(items);
        shared.counters.finished(items, true, false, 0);
    }
}

/// Acknowledges finally failed items once they are handed over (and their
/// dead letter, if any, is written), and gives their room back.
struct HandedOver {
    _held: Arc<super::intake::Held>,
    spool: crate::spool::Spool,
    seqs: Vec<u64>,
}

impl Drop for HandedOver {
    fn drop(&mut self) {
        self.spool.ack(std::mem::take(&mut self.seqs));
    }
}

/// One spooled batch's first request: sends it in `slot`, settles the
/// outcomes, and leaves what failed for now to [`retry_later`]. Never
/// reports a 401 to the worker: with a spool, intake stays open.
pub(super) async fn request(shared: Arc<Shared>, slot: Slot, batch: Box<dyn Spooled>) -> bool {
    let left = LeftBehind {
        shared: &shared,
        items: batch.len(),
    };
    let settled = batch
        .send(&shared.delivery, slot, spool_lane(&shared).max_age)
        .await;
    std::mem::forget(left);
    if let Some((batch, why)) = settle(&shared, settled) {
        shared.tasks.spawn(retry_later(shared.clone(), batch, why));
    }
    false
}

/// Counts, acknowledges and hands over a spooled batch's outcomes; returns
/// the items that failed for now, which keep their room.
fn settle(shared: &Shared, settled: super::batch::Settled) -> Option<(Box<dyn Spooled>, String)> {
    let lane = spool_lane(shared);
    let counters = &shared.counters;
    for (seqs, accepted) in settled.accepted {
        counters.finished(accepted.items, true, true, accepted.attempts);
        lane.spool.ack(seqs);
        shared.intake.release(accepted.items);
    }
    for (undelivered, seqs) in settled.failed {
        let items = undelivered.len();
        counters.finished(items, true, false, undelivered.attempts());
        let handed_over = HandedOver {
            _held: shared.intake.held(items),
            spool: lane.spool.clone(),
            seqs,
        };
        shared.failures.hand_over(undelivered, handed_over);
    }
    for (items, attempts) in settled.left {
        counters.finished(items, true, false, attempts);
        shared.intake.release(items);
    }
    let retry = settled.retry?;
    for &(items, attempts) in &retry.requests {
        counters.finished(items, true, false, attempts);
    }
    counters.parked(retry.batch.len());
    counters
        .spool_unauthorized
        .fetch_add(retry.unauthorized, Relaxed);
    // A flush waiting for the pump may pass now: the outage is on.
    lane.wake.notify_one();
    Some((retry.batch, retry.why))
}

/// Sends a spooled batch that failed for now again after a capped,
/// jittered backoff (1 s doubling to 60 s), until nothing of it is left
/// to retry. When the ingestor drains, it is tried once more at once
/// (within the shutdown deadline); what still fails stays in the spool.
async fn retry_later(shared: Arc<Shared>, mut batch: Box<dyn Spooled>, mut why: String) {
    let counters = &shared.counters;
    let mut phase = shared.phase.subscribe();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let items = batch.len();
        if *phase.borrow_and_update() == Phase::Running {
            let wait = backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
            tracing::warn!(
                items,
                why,
                ?wait,
                "marketap ingestor: delivery failed for now; the items stay in the spool and are sent again"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = phase.changed() => {}
            }
        }
        let draining = *phase.borrow() != Phase::Running;
        let Some(slot) = shared.delivery.slot().await else {
            // The shutdown deadline passed.
            counters.unparked(items, false);
            shared.intake.release(items);
            return;
        };
        counters.unparked(items, true);
        let left = LeftBehind {
            shared: &shared,
            items,
        };
        let settled = batch
            .send(&shared.delivery, slot, spool_lane(&shared).max_age)
            .await;
        std::mem::forget(left);
        match settle(&shared, settled) {
            None => return,
            Some((rest, last)) => (batch, why) = (rest, last),
        }
        if draining {
            let items = batch.len();
            tracing::info!(
                items,
                why,
                "marketap ingestor: shutting down while delivery fails for now; the items stay in the spool"
            );
            counters.unparked(items, false);
            shared.intake.release(items);
            return;
        }
        backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Config, Ingestor, IngestorConfig,
        spool::{Spool, SpoolConfig},
    };

    /// A record the ingestor cannot read back (an unknown kind, or a body
    /// that is not its kind's JSON) is logged, counted as failed and
    /// unreported, and leaves the spool.
    #[tokio::test]
    async fn unreadable_records_are_counted_and_removed_never_dropped_silently() {
        let dir = tempfile::tempdir().unwrap();
        let config = SpoolConfig::new(dir.path());
        let spool = Spool::open(&config, 100).unwrap();
        spool.append(9, b"{}".to_vec(), false).await.unwrap();
        spool
            .append(0, b"{\"not an event\":".to_vec(), false)
            .await
            .unwrap();
        spool.close().await;

        let connection = Config::new("test-key", "proj")
            // Nothing is sent: no record is readable.
            .with_base_url("http://127.0.0.1:9")
            .connect()
            .unwrap();
        let ingestor = Ingestor::launch(
            Arc::new(connection),
            IngestorConfig::default().with_spool(config),
            None,
        )
        .unwrap();
        assert!(ingestor.flush().await.is_empty());
        let metrics = ingestor.metrics();
        assert_eq!((metrics.failed, metrics.unreported), (2, 2));
        let report = ingestor.shutdown(Duration::from_secs(30)).await;
        assert_eq!(report.spooled, 0);
        assert_eq!(crate::spool::inspect(dir.path()).unwrap().items, 0);
    }
}
