//! A blocking client, for code without an async runtime: scripts, sync web
//! frameworks, tests without `#[tokio::main]`. Feature `blocking` (off by
//! default). It is additive: the async API is unchanged beside it.
//!
//! ```no_run
//! use marketap_ext::{Event, blocking::Marketap};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Marketap::from_env()?;
//!     let event = Event::builder("user-42", "mkt_login").build()?;
//!     let report = client.send_events([event])?.into_result()?;
//!     println!("{report}");
//!     Ok(())
//! }
//! ```
//!
//! # How it works
//!
//! As `reqwest::blocking` does: [`Marketap::new`] starts a thread of its own
//! that runs a single-threaded Tokio runtime and drives the async
//! [`crate::Marketap`]. Each call hands its work to that thread and waits
//! for the answer. Items given as an iterator are passed to it over a
//! bounded channel as the engine takes them, so memory stays bounded as in
//! the async calls. Clones of the client, and its [`Ingestor`]s, share the
//! thread; it ends when the last of them is dropped. That last drop waits
//! for the thread, and so for every ingestor dropped without
//! [`Ingestor::shutdown`]: as with the async ingestor, what such an
//! ingestor still held is sent in the background with no deadline (its
//! retries bound it), and this is when the background ends. Call
//! `shutdown(deadline)` to bound it. A drop on a Tokio runtime's thread
//! does not wait: the thread then ends by itself.
//!
//! # Inside an async context
//!
//! Blocking a thread of a Tokio runtime stalls every task on it, can
//! deadlock (a server on that same runtime would never answer), and makes
//! Tokio's own blocking waits panic. So every call that waits first looks
//! for a runtime on the calling thread
//! ([`Handle::try_current`](tokio::runtime::Handle::try_current)); if there
//! is one, it sends nothing and fails with [`InAsyncContext`], which hands
//! back everything the call was given: nothing is dropped, nothing panics.
//! Use the async [`crate::Marketap`] there: it has the same calls.
//!
//! This includes the closure of `tokio::task::spawn_blocking`, where
//! blocking would be allowed: Tokio enters its runtime there too, and offers
//! no public way to tell that thread from a worker. A refusal is better
//! than a guess that may stall a runtime; from a blocking task, call the
//! client on a `std::thread` of your own, or use the async client.
//!
//! Building a client or an ingestor, [`Ingestor::try_track`] and
//! [`Ingestor::metrics`] never wait, so they work anywhere.
//!
//! # What the calls return
//!
//! The async call's result, with the refusal added, in one rule:
//! - where the async call returns a value (a [`BatchReport`], a
//!   [`ShutdownReport`]), the blocking one returns
//!   `Result<value, InAsyncContext<input>>`;
//! - where the async call returns `Result<V, E>`, the blocking one returns
//!   `Result<V, Error<E, input>>`: [`Error::Call`] is the async call's
//!   error as it is, [`Error::InAsyncContext`] the refusal.
//!
//! `input` is what the call was given (the items, the ids, the event), or
//! `()` when the call borrowed it or took nothing.

use std::{
    fmt,
    future::Future,
    panic::{AssertUnwindSafe, resume_unwind},
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use futures::FutureExt;
use tokio::{runtime::Handle, sync::oneshot};
use tokio_util::task::TaskTracker;

use crate::{
    config::Config,
    dead_letter::DeadLetter,
    error::{ConfigError, ValidationError},
    ingest::{EnqueueError, IngestorConfig, Metrics, ShutdownReport},
    model::item::{Device, Event, EventBuilder, UserDeletion, UserProfile, UserProfileBuilder},
    model::kind::{Item, Undelivered},
    report::{BatchReport, FailedBatch},
};

/// Items a batch call holds between the caller's iterator and the runtime
/// thread: one full request's worth.
const CHANNEL_ITEMS: usize = crate::config::MAX_BATCH_SIZE;

/// A blocking call made on a Tokio runtime's thread, where it may not
/// wait. Nothing was sent; [`into_input`](Self::into_input) hands back what
/// the call was given.
pub struct InAsyncContext<T> {
    input: T,
}

impl<T> InAsyncContext<T> {
    fn new(input: T) -> Self {
        Self { input }
    }

    /// What the call was given, untouched.
    pub fn into_input(self) -> T {
        self.input
    }

    /// What the call was given.
    pub fn input(&self) -> &T {
        &self.input
    }
}

impl<T> fmt::Debug for InAsyncContext<T> {
    /// Says what happened, not the items (they can be many, and personal).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InAsyncContext").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for InAsyncContext<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the blocking Marketap client was called inside an async context (a Tokio runtime \
             on this thread), where it must not wait; nothing was sent: use the async client \
             there, or call this one from a thread of your own",
        )
    }
}

impl<T> std::error::Error for InAsyncContext<T> {}

/// A blocking call that returns a `Result` in the async client: its error
/// `E`, or the refusal to wait inside an async context, which hands back
/// the input `T`. See [the module docs](self#what-the-calls-return).
#[non_exhaustive]
pub enum Error<E, T> {
    /// Called on a Tokio runtime's thread; nothing was sent.
    InAsyncContext(InAsyncContext<T>),
    /// The call ran and failed, as the async call does.
    Call(E),
}

impl<E: fmt::Debug, T> fmt::Debug for Error<E, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InAsyncContext(refused) => {
                f.debug_tuple("InAsyncContext").field(refused).finish()
            }
            Self::Call(error) => f.debug_tuple("Call").field(error).finish(),
        }
    }
}

impl<E: fmt::Display, T> fmt::Display for Error<E, T> {
    /// The error inside, as it says itself: this level adds nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InAsyncContext(refused) => fmt::Display::fmt(refused, f),
            Self::Call(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl<E: std::error::Error, T> std::error::Error for Error<E, T> {
    /// The cause of the error inside (the error is not its own cause, so
    /// a chain prints each message once).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InAsyncContext(_) => None,
            Self::Call(error) => error.source(),
        }
    }
}

/// Whether this thread runs (or has entered) a Tokio runtime.
fn in_async_context() -> bool {
    Handle::try_current().is_ok()
}

/// The runtime thread, shared by a client's clones and its ingestors;
/// stopped and joined when the last of them is dropped.
struct Runtime {
    handle: Handle,
    /// Tasks the thread finishes before it ends: each ingestor's drain.
    keep: TaskTracker,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Runtime {
    fn start() -> Arc<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("cannot start the marketap runtime: {error}"));
        let handle = runtime.handle().clone();
        let keep = TaskTracker::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let waiting = keep.clone();
        let thread = std::thread::Builder::new()
            .name("marketap-blocking".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    // Ends when the last handle drops the sender.
                    let _ = stopped.await;
                    waiting.close();
                    waiting.wait().await;
                });
            })
            .unwrap_or_else(|error| panic!("cannot start the marketap runtime thread: {error}"));
        Arc::new(Self {
            handle,
            keep,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the runtime thread and returns its answer. `feed`
    /// runs on this thread meanwhile (it passes items to `work`). The
    /// caller has checked that this thread may wait.
    fn run<W>(&self, work: W, feed: impl FnOnce()) -> W::Output
    where
        W: Future + Send + 'static,
        W::Output: Send + 'static,
    {
        let (answer, answered) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            // A panic in the work is the caller's, as in the async client.
            let _ = answer.send(AssertUnwindSafe(work).catch_unwind().await);
        });
        feed();
        match answered.recv() {
            Ok(Ok(output)) => output,
            Ok(Err(panic)) => resume_unwind(panic),
            // The runtime lives while this handle does, so the task ran.
            Err(_) => unreachable!("the marketap runtime dropped a call's task"),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // Never wait on the runtime's own thread (a callback holding the
            // last handle) nor on another runtime's: the thread ends anyway.
            if thread.thread().id() != std::thread::current().id() && !in_async_context() {
                // A panic on the thread was printed there already.
                let _ = thread.join();
            }
        }
    }
}

/// The blocking Marketap client: [`crate::Marketap`]'s calls, each
/// returning once it is done. Clones share one connection pool and one
/// runtime thread.
///
/// ```no_run
/// use marketap_ext::{Config, blocking::Marketap};
///
/// let client = Marketap::new(Config::new("api-key", "project-id"))?;
/// client.delete_user("user-42")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Marketap {
    client: crate::Marketap,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for Marketap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::Marketap")
            .field(&self.client)
            .finish()
    }
}

impl Marketap {
    /// A client for `config`, with its runtime thread. Every setting is
    /// checked here; nothing is sent. Works anywhere, an async context
    /// included.
    ///
    /// # Panics
    ///
    /// If the system cannot start a thread or a Tokio runtime, as
    /// [`std::thread::spawn`] does.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let client = crate::Marketap::new(config)?;
        Ok(Self {
            client,
            runtime: Runtime::start(),
        })
    }

    /// A client from `MARKETAP_API_KEY`, `MARKETAP_PROJECT_ID` and,
    /// optionally, `MARKETAP_BASE_URL`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new(Config::from_env()?)
    }

    /// The project every request is for.
    pub fn project_id(&self) -> &str {
        self.client.project_id()
    }

    /// An event builder with this client's reserved-check setting, as
    /// [`crate::Marketap::event`].
    pub fn event(&self, user_id: impl Into<String>, event_name: impl Into<String>) -> EventBuilder {
        self.client.event(user_id, event_name)
    }

    /// A profile builder with this client's reserved-check setting, as
    /// [`crate::Marketap::profile`].
    pub fn profile(&self, user_id: impl Into<String>) -> UserProfileBuilder {
        self.client.profile(user_id)
    }

    /// Sends events, as [`crate::Marketap::send_events`].
    pub fn send_events(
        &self,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<BatchReport<Event>, InAsyncContext<Vec<Event>>> {
        self.send_iter(events)
    }

    /// Updates user profiles, as [`crate::Marketap::update_profiles`].
    pub fn update_profiles(
        &self,
        profiles: impl IntoIterator<Item = UserProfile>,
    ) -> Result<BatchReport<UserProfile>, InAsyncContext<Vec<UserProfile>>> {
        self.send_iter(profiles)
    }

    /// Updates device push tokens, as [`crate::Marketap::update_devices`].
    pub fn update_devices(
        &self,
        devices: impl IntoIterator<Item = Device>,
    ) -> Result<BatchReport<Device>, InAsyncContext<Vec<Device>>> {
        self.send_iter(devices)
    }

    /// Requests deletion of users' profiles, as
    /// [`crate::Marketap::delete_users`]: every id is checked before
    /// anything is sent. A refusal hands the ids back.
    pub fn delete_users<I>(
        &self,
        user_ids: I,
    ) -> Result<BatchReport<UserDeletion>, Error<ValidationError, Vec<String>>>
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let ids: Vec<String> = user_ids.into_iter().map(Into::into).collect();
        if in_async_context() {
            return Err(Error::InAsyncContext(InAsyncContext::new(ids)));
        }
        let client = self.client.clone();
        self.runtime
            .run(async move { client.delete_users(ids).await }, || {})
            .map_err(Error::Call)
    }

    /// Requests deletion of one user's profile, as
    /// [`crate::Marketap::delete_user`]. A refusal hands the id back.
    pub fn delete_user(
        &self,
        user_id: impl Into<String>,
    ) -> Result<(), Error<crate::Error, String>> {
        let id = user_id.into();
        if in_async_context() {
            return Err(Error::InAsyncContext(InAsyncContext::new(id)));
        }
        let client = self.client.clone();
        self.runtime
            .run(async move { client.delete_user(id).await }, || {})
            .map_err(Error::Call)
    }

    /// Sends `items` as exactly one request, as
    /// [`crate::Marketap::send_batch`].
    pub fn send_batch<T: Item>(
        &self,
        items: Vec<T>,
    ) -> Result<usize, Error<FailedBatch<T>, Vec<T>>> {
        if in_async_context() {
            return Err(Error::InAsyncContext(InAsyncContext::new(items)));
        }
        let client = self.client.clone();
        self.runtime
            .run(async move { client.send_batch(items).await }, || {})
            .map_err(Error::Call)
    }

    /// Sends a dead letter's items again, as [`crate::Marketap::resend`].
    /// The letter stays yours whatever happens.
    pub fn resend(&self, letter: &DeadLetter) -> Result<usize, Error<crate::Error, ()>> {
        if in_async_context() {
            return Err(Error::InAsyncContext(InAsyncContext::new(())));
        }
        let client = self.client.clone();
        let letter = letter.clone();
        self.runtime
            .run(async move { client.resend(&letter).await }, || {})
            .map_err(Error::Call)
    }

    /// Starts an [`Ingestor`] on this client's runtime thread. Works
    /// anywhere, an async context included.
    pub fn ingestor(&self, config: IngestorConfig) -> Result<Ingestor, ConfigError> {
        let ingestor = {
            let _on_this_runtime = self.runtime.handle.enter();
            self.client.ingestor(config)?
        };
        // The thread ends only once this ingestor has (after shutdown, or
        // after a drop and its drain).
        self.runtime
            .keep
            .spawn_on(ingestor.finished(), &self.runtime.handle);
        Ok(Ingestor {
            ingestor,
            runtime: self.runtime.clone(),
        })
    }

    /// A batch call over an iterator: its items go to the runtime thread
    /// through a bounded channel while the engine sends them.
    fn send_iter<T: Item>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<BatchReport<T>, InAsyncContext<Vec<T>>> {
        let items = items.into_iter();
        if in_async_context() {
            return Err(InAsyncContext::new(items.collect()));
        }
        let (sender, mut receiver) = tokio::sync::mpsc::channel(CHANNEL_ITEMS);
        let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
        let client = self.client.clone();
        Ok(self
            .runtime
            .run(async move { client.send_stream(stream).await }, move || {
                for item in items {
                    // Allowed: this thread is not a runtime's. The engine
                    // reads every item (after a 401 too), so it fails only
                    // if the work panicked, which `run` then raises.
                    if sender.blocking_send(item).is_err() {
                        break;
                    }
                }
            }))
    }
}

/// The blocking [`crate::Ingestor`]: sends in the background on the
/// client's runtime thread; `track` waits only while the queue is full.
/// Clones share one queue. Dropped without [`shutdown`](Self::shutdown), it
/// behaves as the async one: what it holds is still sent, and the client's
/// last handle waits for that (see [the module docs](self#how-it-works)).
///
/// ```no_run
/// use std::time::Duration;
/// use marketap_ext::{Event, IngestorConfig, blocking::Marketap};
///
/// let client = Marketap::from_env()?;
/// let ingestor = client.ingestor(IngestorConfig::default())?;
/// ingestor.track(Event::builder("user-42", "mkt_login").build()?)?;
/// let report = ingestor.shutdown(Duration::from_secs(10))?;
/// assert_eq!(report.undelivered_items(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Ingestor {
    // Declared (so dropped) before the runtime: the thread waits for this
    // ingestor's drain, which its drop starts.
    ingestor: crate::Ingestor,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::Ingestor")
            .field(&self.ingestor)
            .finish()
    }
}

impl Ingestor {
    /// Queues an event; waits only while the ingestor is at capacity.
    pub fn track(&self, event: Event) -> Result<(), Error<EnqueueError<Event>, Event>> {
        self.enqueue(event)
    }

    /// Queues an event, or hands it back at once if at capacity. Never
    /// waits, so it works anywhere.
    pub fn try_track(&self, event: Event) -> Result<(), EnqueueError<Event>> {
        self.ingestor.try_track(event)
    }

    /// Queues a user-profile update; waits like [`track`](Self::track).
    pub fn identify(
        &self,
        profile: UserProfile,
    ) -> Result<(), Error<EnqueueError<UserProfile>, UserProfile>> {
        self.enqueue(profile)
    }

    /// Queues a device registration; waits like [`track`](Self::track).
    pub fn register_device(
        &self,
        device: Device,
    ) -> Result<(), Error<EnqueueError<Device>, Device>> {
        self.enqueue(device)
    }

    /// Sends everything queued before the call, as
    /// [`crate::Ingestor::flush`], and returns the undelivered items kept
    /// so far.
    pub fn flush(&self) -> Result<Vec<Undelivered>, InAsyncContext<()>> {
        if in_async_context() {
            return Err(InAsyncContext::new(()));
        }
        let ingestor = self.ingestor.clone();
        Ok(self
            .runtime
            .run(async move { ingestor.flush().await }, || {}))
    }

    /// Stops intake, sends what is queued, and returns within `deadline`
    /// with a report, as [`crate::Ingestor::shutdown`].
    pub fn shutdown(&self, deadline: Duration) -> Result<ShutdownReport, InAsyncContext<()>> {
        if in_async_context() {
            return Err(InAsyncContext::new(()));
        }
        let ingestor = self.ingestor.clone();
        Ok(self
            .runtime
            .run(async move { ingestor.shutdown(deadline).await }, || {}))
    }

    /// The counters now. Never waits.
    pub fn metrics(&self) -> Metrics {
        self.ingestor.metrics()
    }

    /// Queues without a hop to the runtime thread unless the queue is full.
    fn enqueue<T: Item>(&self, item: T) -> Result<(), Error<EnqueueError<T>, T>> {
        if in_async_context() {
            return Err(Error::InAsyncContext(InAsyncContext::new(item)));
        }
        match self.ingestor.try_enqueue(item) {
            Err(EnqueueError::Full(item)) => {
                let ingestor = self.ingestor.clone();
                self.runtime
                    .run(async move { ingestor.enqueue(item).await }, || {})
                    .map_err(Error::Call)
            }
            queued_or_refused => queued_or_refused.map_err(Error::Call),
        }
    }
}
