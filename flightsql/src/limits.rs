//! What queries may use, so one runaway query cannot take the server: a time limit, a
//! memory limit per query within one for the whole server, and a bound on each user's
//! concurrent queries with a short queue behind it. A query also stops when its client
//! goes away or cancels it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, UnboundedMemoryPool,
};
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;

/// How much each query and each user may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// A query running longer is stopped.
    pub query_timeout: Duration,
    /// Bytes one query may hold in memory before its operators spill or it fails.
    pub query_memory: Option<usize>,
    /// Bytes all queries together may hold.
    pub server_memory: Option<usize>,
    /// Queries one user may run at once.
    pub concurrent_per_user: usize,
    /// Queries one user may have waiting for a turn; more are refused at once.
    pub queued_per_user: usize,
    /// How long a query waits for a turn before it is refused.
    pub queue_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(15 * 60),
            query_memory: None,
            server_memory: None,
            concurrent_per_user: 8,
            queued_per_user: 32,
            queue_timeout: Duration::from_secs(60),
        }
    }
}

/// One user's own limits, where they differ from the server's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserLimits {
    pub query_timeout: Option<Duration>,
    pub concurrent: Option<usize>,
}

/// A user's turns: permits for running queries, and a count of the waiting ones.
struct Turns {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Admits queries within the limits and keeps the running ones, to cancel by ticket.
pub(crate) struct Admission {
    limits: Limits,
    users: Mutex<HashMap<String, Arc<Turns>>>,
    running: Arc<Mutex<HashMap<u64, Running>>>,
    next_id: AtomicU64,
    server_pool: Arc<dyn MemoryPool>,
}

/// A running query as a cancellation finds it.
struct Running {
    user: String,
    ticket: Vec<u8>,
    cancel: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        let server_pool: Arc<dyn MemoryPool> = match limits.server_memory {
            Some(bytes) => Arc::new(FairSpillPool::new(bytes)),
            None => Arc::new(UnboundedMemoryPool::default()),
        };
        Self {
            limits,
            users: Mutex::default(),
            running: Arc::default(),
            next_id: AtomicU64::new(0),
            server_pool,
        }
    }

    /// The memory pool of one query: its own limit, within the server's.
    pub(crate) fn query_pool(&self) -> Arc<dyn MemoryPool> {
        match self.limits.query_memory {
            Some(limit) => Arc::new(QueryPool {
                server: Arc::clone(&self.server_pool),
                limit,
                used: AtomicUsize::new(0),
            }),
            None => Arc::clone(&self.server_pool),
        }
    }

    /// Waits for one of `user`'s turns; refuses with RESOURCE_EXHAUSTED when the queue is
    /// full or the wait is too long.
    pub(crate) async fn admit(&self, user: &str, own: &UserLimits) -> Result<Turn, Status> {
        let concurrent = own.concurrent.unwrap_or(self.limits.concurrent_per_user);
        let turns = Arc::clone(lock(&self.users).entry(user.to_owned()).or_insert_with(|| {
            Arc::new(Turns {
                running: Arc::new(Semaphore::new(concurrent)),
                waiting: AtomicUsize::new(0),
            })
        }));
        if let Ok(permit) = Arc::clone(&turns.running).try_acquire_owned() {
            return Ok(Turn { _permit: permit });
        }
        let waiting = turns.waiting.fetch_add(1, Ordering::SeqCst);
        let _left = WaitingGuard(&turns.waiting);
        if waiting >= self.limits.queued_per_user {
            return Err(Status::resource_exhausted(format!(
                "{user} already runs {concurrent} queries and has {waiting} waiting, the most \
                 allowed; try again when some have finished"
            )));
        }
        match tokio::time::timeout(
            self.limits.queue_timeout,
            Arc::clone(&turns.running).acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(Turn { _permit: permit }),
            Ok(Err(_)) => Err(Status::unavailable("the server is shutting down")),
            Err(_) => Err(Status::resource_exhausted(format!(
                "{user} already runs {concurrent} queries and this one waited {} s for a turn; \
                 try again when some have finished",
                self.limits.queue_timeout.as_secs()
            ))),
        }
    }

    /// Registers a query that starts now, to be stopped by its ticket or its deadline.
    pub(crate) fn start(&self, user: &str, ticket: &[u8], own: &UserLimits) -> QueryGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let stop = cancel.child_token();
        let timeout = own.query_timeout.unwrap_or(self.limits.query_timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        // The deadline reaches the query's operators even while none of them returns.
        tokio::spawn({
            let stop = stop.clone();
            async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => stop.cancel(),
                    _ = stop.cancelled() => {}
                }
            }
        });
        lock(&self.running).insert(
            id,
            Running {
                user: user.to_owned(),
                ticket: ticket.to_vec(),
                cancel: cancel.clone(),
            },
        );
        QueryGuard {
            id,
            running: Arc::clone(&self.running),
            cancel,
            stop,
            timeout,
            deadline,
        }
    }

    /// Cancels `user`'s running queries of this ticket; how many there were.
    pub(crate) fn cancel(&self, user: &str, ticket: &[u8]) -> usize {
        let running = lock(&self.running);
        let mut cancelled = 0;
        for query in running.values() {
            if query.user == user && query.ticket == ticket {
                query.cancel.cancel();
                cancelled += 1;
            }
        }
        cancelled
    }

    /// Cancels every running query (the server is stopping); how many there were.
    pub(crate) fn cancel_all(&self) -> usize {
        let running = lock(&self.running);
        for query in running.values() {
            query.cancel.cancel();
        }
        running.len()
    }

    /// Queries running now.
    #[cfg(test)]
    fn running(&self) -> usize {
        lock(&self.running).len()
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One of a user's turns, given back when the query's stream ends or is dropped.
pub(crate) struct Turn {
    _permit: OwnedSemaphorePermit,
}

/// A running query's registration, removed when its stream is dropped.
pub(crate) struct QueryGuard {
    id: u64,
    running: Arc<Mutex<HashMap<u64, Running>>>,
    cancel: CancellationToken,
    /// Cancelled by a cancel, at the deadline and when the stream is dropped: what the
    /// query's operators check ([`crate::interrupt::interruptible`]).
    stop: CancellationToken,
    timeout: Duration,
    deadline: tokio::time::Instant,
}

impl QueryGuard {
    /// What stops the query's work.
    pub(crate) fn stop(&self) -> &CancellationToken {
        &self.stop
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        tracing::debug!(query = self.id, "query ended: its work is stopped");
        self.stop.cancel();
        lock(&self.running).remove(&self.id);
    }
}

/// A query's result stream that ends with an error at its deadline or when cancelled.
/// Dropping it (the client went away) stops the query's work ([`QueryGuard::stop`]).
pub(crate) struct Limited<S> {
    inner: Option<S>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    guard: QueryGuard,
    _turn: Turn,
}

impl<S> Limited<S> {
    pub(crate) fn new(inner: S, guard: QueryGuard, turn: Turn) -> Self {
        Self {
            inner: Some(inner),
            deadline: Box::pin(tokio::time::sleep_until(guard.deadline)),
            cancelled: Box::pin(guard.cancel.clone().cancelled_owned()),
            guard,
            _turn: turn,
        }
    }

    /// Why the query was stopped, if it was: its client cancelled it or its time is up.
    fn stopped(&self) -> Option<Status> {
        if self.guard.cancel.is_cancelled() {
            return Some(Status::cancelled("the query was cancelled by its client"));
        }
        (tokio::time::Instant::now() >= self.guard.deadline).then(|| {
            Status::deadline_exceeded(format!(
                "the query ran longer than its limit of {} s and was stopped",
                self.guard.timeout.as_secs()
            ))
        })
    }
}

impl<S, T> Stream for Limited<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.inner.is_none() {
            return Poll::Ready(None);
        }
        // Polled for their wake-ups; what stopped the query is read from the guard.
        let _ = self.cancelled.as_mut().poll(cx);
        let _ = self.deadline.as_mut().poll(cx);
        if let Some(status) = self.stopped() {
            self.inner = None;
            return Poll::Ready(Some(Err(status)));
        }
        let polled = self
            .inner
            .as_mut()
            .map(|inner| Pin::new(inner).poll_next(cx));
        match polled {
            Some(Poll::Ready(None)) | None => {
                self.inner = None;
                Poll::Ready(None)
            }
            // The operators' own error at a stop says less than why they stopped.
            Some(Poll::Ready(Some(Err(error)))) => {
                self.inner = None;
                Poll::Ready(Some(Err(self.stopped().unwrap_or(error))))
            }
            Some(other) => other,
        }
    }
}

/// One query's memory: a limit of its own, drawn from the server's pool.
#[derive(Debug)]
struct QueryPool {
    server: Arc<dyn MemoryPool>,
    limit: usize,
    used: AtomicUsize,
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a query's pool of {} MiB", self.limit >> 20)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "strata-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.server.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.server.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::SeqCst);
        self.server.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::SeqCst);
        self.server.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DfResult<()> {
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            if used + additional > self.limit {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "the query needs more than its memory limit of {} MiB ({} asked {} bytes \
                     more with {} MiB in use)",
                    self.limit >> 20,
                    reservation.consumer().name(),
                    additional,
                    used >> 20
                )));
            }
            match self.used.compare_exchange(
                used,
                used + additional,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => used = now,
            }
        }
        if let Err(error) = self.server.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::SeqCst);
            return Err(error);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_pool_refuses_past_its_own_limit_and_gives_back_what_it_frees() {
        let admission = Admission::new(Limits {
            query_memory: Some(1000),
            server_memory: Some(1500),
            ..Limits::default()
        });
        let first = admission.query_pool();
        let second = admission.query_pool();
        let a = MemoryConsumer::new("a").register(&first);
        let b = MemoryConsumer::new("b").register(&second);
        a.try_grow(800).unwrap();
        let error = a.try_grow(300).unwrap_err();
        assert!(
            matches!(error, DataFusionError::ResourcesExhausted(_)),
            "{error}"
        );
        assert!(error.to_string().contains("memory limit"), "{error}");
        // The server's pool is shared: 800 + 800 is over its 1500.
        assert!(b.try_grow(800).is_err());
        a.shrink(500);
        b.try_grow(800).unwrap();
        assert_eq!(first.reserved(), 300);
    }

    #[tokio::test]
    async fn a_user_gets_a_few_turns_a_short_queue_and_then_a_clear_refusal() {
        let admission = Admission::new(Limits {
            concurrent_per_user: 2,
            queued_per_user: 1,
            queue_timeout: Duration::from_millis(200),
            ..Limits::default()
        });
        let own = UserLimits::default();
        let one = admission.admit("ann", &own).await.unwrap();
        let _two = admission.admit("ann", &own).await.unwrap();
        // Another user is not held up by ann.
        let _bob = admission.admit("bob", &own).await.unwrap();
        let waited = admission.admit("ann", &own).await.err().unwrap();
        assert_eq!(waited.code(), tonic::Code::ResourceExhausted);
        assert!(waited.message().contains("waited"), "{}", waited.message());
        drop(one);
        assert!(admission.admit("ann", &own).await.is_ok());
    }

    #[tokio::test]
    async fn a_query_ends_at_its_deadline_or_when_its_ticket_is_cancelled() {
        let admission = Admission::new(Limits::default());
        let own = UserLimits {
            query_timeout: Some(Duration::from_millis(100)),
            concurrent: None,
        };
        let endless = futures::stream::pending::<Result<u8, Status>>();
        let turn = admission.admit("ann", &own).await.unwrap();
        let mut limited = Limited::new(endless, admission.start("ann", b"t", &own), turn);
        let ended = futures::StreamExt::next(&mut limited).await.unwrap();
        assert_eq!(ended.unwrap_err().code(), tonic::Code::DeadlineExceeded);
        drop(limited);
        assert_eq!(admission.running(), 0);

        let own = UserLimits::default();
        let turn = admission.admit("ann", &own).await.unwrap();
        let endless = futures::stream::pending::<Result<u8, Status>>();
        let mut limited = Limited::new(endless, admission.start("ann", b"t", &own), turn);
        assert_eq!(
            admission.cancel("bob", b"t"),
            0,
            "only its own user cancels it"
        );
        assert_eq!(admission.cancel("ann", b"t"), 1);
        let ended = futures::StreamExt::next(&mut limited).await.unwrap();
        assert_eq!(ended.unwrap_err().code(), tonic::Code::Cancelled);
    }

    #[tokio::test]
    async fn the_stop_reaches_the_work_at_the_deadline_and_when_the_stream_is_dropped() {
        let admission = Admission::new(Limits::default());
        let brief = UserLimits {
            query_timeout: Some(Duration::from_millis(50)),
            concurrent: None,
        };
        let guard = admission.start("ann", b"t", &brief);
        let stop = guard.stop().clone();
        tokio::time::timeout(Duration::from_secs(5), stop.cancelled())
            .await
            .expect("the deadline stops the work without the stream being polled");

        let own = UserLimits::default();
        let guard = admission.start("ann", b"t", &own);
        let stop = guard.stop().clone();
        assert!(!stop.is_cancelled());
        drop(guard);
        assert!(stop.is_cancelled(), "a dropped stream stops the work");

        // Work that fails because it was stopped reports why it was stopped.
        let guard = admission.start("ann", b"t", &brief);
        let stop = guard.stop().clone();
        let work = Box::pin(futures::stream::once(async move {
            stop.cancelled().await;
            Err::<u8, Status>(Status::invalid_argument("the query was stopped"))
        }));
        let turn = admission.admit("ann", &own).await.unwrap();
        let mut limited = Limited::new(work, guard, turn);
        let ended = futures::StreamExt::next(&mut limited).await.unwrap();
        assert_eq!(ended.unwrap_err().code(), tonic::Code::DeadlineExceeded);
    }
}
