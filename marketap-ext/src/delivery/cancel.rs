//! When a run must give up: the [`Phase`] a delivery run is in (running,
//! or draining until an optional deadline), [`Cancel`], a request's view of
//! it, and [`Stop`], the public handle that sets the deadline of a
//! [`Marketap::deliver_until`](crate::Marketap::deliver_until) run. Once a
//! deadline is set and has passed, no request starts and those in flight
//! are abandoned.

use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, time::Instant};

/// Where a run is in its life. Requests watch it: once a deadline is set
/// and has passed, none starts and those in flight are abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Taking new items.
    Running,
    /// Intake is closed; what was taken is sent, until `deadline` if set.
    Draining {
        /// When to give up on what is not yet delivered.
        deadline: Option<Instant>,
    },
}

impl Phase {
    /// Draining, with the earlier of the current deadline and `deadline`
    /// (a later call can shorten a deadline, never lengthen it).
    pub(crate) fn drain(self, deadline: Option<Instant>) -> Phase {
        let earliest = match (self, deadline) {
            (
                Phase::Draining {
                    deadline: Some(current),
                },
                Some(new),
            ) => Some(current.min(new)),
            (
                Phase::Draining {
                    deadline: Some(current),
                },
                None,
            ) => Some(current),
            (_, new) => new,
        };
        Phase::Draining { deadline: earliest }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Phase::Draining { deadline } => deadline,
            Phase::Running => None,
        }
    }
}

/// A request's view of its run's [`Phase`]: whether to give up.
#[derive(Debug, Clone)]
pub(crate) struct Cancel(Option<watch::Receiver<Phase>>);

impl Cancel {
    /// For calls that run to the end.
    pub(crate) fn never() -> Self {
        Self(None)
    }

    pub(crate) fn new(phase: watch::Receiver<Phase>) -> Self {
        Self(Some(phase))
    }

    /// Whether the deadline has passed.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|phase| {
            phase
                .borrow()
                .deadline()
                .is_some_and(|deadline| Instant::now() >= deadline)
        })
    }

    /// Resolves once the deadline has passed; never, without one.
    pub(crate) async fn cancelled(&mut self) {
        let Some(phase) = &mut self.0 else {
            return std::future::pending().await;
        };
        loop {
            let deadline = phase.borrow_and_update().deadline();
            let changed = match deadline {
                Some(deadline) => tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return,
                    changed = phase.changed() => changed,
                },
                None => phase.changed().await,
            };
            if changed.is_err() {
                // Nobody can set a deadline any more.
                return std::future::pending().await;
            }
        }
    }
}

/// Gives up on a delivery run in time: pass it to
/// [`Marketap::deliver_until`](crate::Marketap::deliver_until), and call
/// [`drain`](Self::drain) when the run must end (a Ctrl-C, a deploy).
///
/// Stopping the *input* is the caller's part: end the item stream, and the
/// run sends what it already took. `Stop` bounds how long that may take:
/// once the deadline passes, no request starts, and requests in flight are
/// abandoned; their items come back in their outcomes with
/// [`Error::Cancelled`](crate::Error::Cancelled) (`attempts == 0` if they
/// never went on the wire). Clones share one deadline.
///
/// ```no_run
/// use std::time::Duration;
/// use futures::{StreamExt, stream};
/// use marketap_ext::{Event, Marketap, Stop};
///
/// # async fn run(client: Marketap, events: Vec<Event>) {
/// let stop = Stop::new();
/// let on_signal = stop.clone();
/// tokio::spawn(async move {
///     let _ = tokio::signal::ctrl_c().await;
///     on_signal.drain(Duration::from_secs(10));
/// });
/// let mut outcomes = std::pin::pin!(client.deliver_until(stream::iter(events), &stop));
/// while let Some(outcome) = outcomes.next().await {
///     println!("{} items from offset {}: {:?}", outcome.items(), outcome.offset, outcome.result.is_ok());
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Stop {
    phase: Arc<watch::Sender<Phase>>,
}

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

impl Stop {
    /// A handle with no deadline yet.
    pub fn new() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Running)),
        }
    }

    /// Gives the run's requests `within` from now to finish. A later call
    /// can shorten the deadline, never lengthen it; `Duration::ZERO` gives
    /// up at once, `Duration::MAX` never.
    pub fn drain(&self, within: Duration) {
        let deadline = Instant::now().checked_add(within);
        self.phase
            .send_modify(|phase| *phase = phase.drain(deadline));
    }

    /// What the run's requests watch.
    pub(crate) fn cancel(&self) -> Cancel {
        Cancel::new(self.phase.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_later_shutdown_can_shorten_a_deadline_but_never_lengthen_it() {
        let now = Instant::now();
        let soon = Some(now + Duration::from_secs(1));
        let later = Some(now + Duration::from_secs(10));
        let drained = |deadline| Phase::Draining { deadline };
        assert_eq!(Phase::Running.drain(None), drained(None));
        assert_eq!(Phase::Running.drain(later), drained(later));
        assert_eq!(drained(None).drain(soon), drained(soon));
        assert_eq!(drained(later).drain(soon), drained(soon));
        assert_eq!(drained(soon).drain(later), drained(soon));
        assert_eq!(drained(soon).drain(None), drained(soon));
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_fires_at_the_deadline_and_not_before() {
        let (phase, watching) = watch::channel(Phase::Running);
        let mut cancel = Cancel::new(watching);
        assert!(!cancel.is_cancelled());
        let deadline = Instant::now() + Duration::from_secs(5);
        phase.send_modify(|p| *p = p.drain(Some(deadline)));
        assert!(!cancel.is_cancelled());
        cancel.cancelled().await;
        assert!(Instant::now() >= deadline);
        assert!(cancel.is_cancelled());

        assert!(!Cancel::never().is_cancelled());
        let mut never = Cancel::never();
        let waited = tokio::time::timeout(Duration::from_secs(3600), never.cancelled());
        assert!(waited.await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn stop_sets_a_deadline_that_only_shortens() {
        let stop = Stop::default();
        let mut cancel = stop.cancel();
        assert!(!cancel.is_cancelled());
        stop.drain(Duration::MAX);
        assert!(!cancel.is_cancelled());
        let start = Instant::now();
        stop.clone().drain(Duration::from_secs(5));
        stop.drain(Duration::from_secs(60));
        cancel.cancelled().await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert!(stop.cancel().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn draining_without_a_deadline_never_cancels() {
        let (phase, watching) = watch::channel(Phase::Running);
        let mut cancel = Cancel::new(watching);
        phase.send_modify(|p| *p = p.drain(None));
        let waited = tokio::time::timeout(Duration::from_secs(3600), cancel.cancelled()).await;
        assert!(waited.is_err());
        assert!(!cancel.is_cancelled());
    }
}
