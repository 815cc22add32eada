//! One orchestrator at a time per warehouse: a lease kept in the warehouse itself, so
//! a second `strata scheduler --warehouse` or `strata run --schedule` waits as a
//! standby and takes over when the holder stops renewing (it died, or lost the store).
//!
//! The lease is a series of terms, one object each, created with a create-only put
//! (`PutMode::Create`), so of two processes taking the same expired term exactly one
//! gets it. The holder renews its own term by rewriting its expiry; a standby takes
//! the next term once the newest has expired. Expiries are wall-clock times, so the
//! processes' clocks must agree to well within the lease's time to live.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};
use strata_storage::{StorageError, Warehouse, paths};

use crate::error::Result;

/// How long a term lasts without a renewal.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

/// One term of the lease, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Term {
    holder: String,
    /// When the term ends unless renewed, in milliseconds since the epoch.
    expires_at_ms: u64,
}

/// The term this process holds, and until when it may act on it.
#[derive(Debug, Clone, Copy)]
struct Held {
    term: u64,
    until: Instant,
}

/// This process's side of one lease in a warehouse.
#[derive(Debug)]
pub struct Lease {
    warehouse: Warehouse,
    dir: StorePath,
    holder: String,
    ttl: Duration,
    held: Option<Held>,
}

/// What [`Lease::hold`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// This process holds the lease (it took or renewed it).
    Held,
    /// Another process holds it, named by its holder text.
    Standby { holder: String },
}

impl Lease {
    /// The lease `name` of the warehouse, for a process that calls itself `holder`.
    pub fn new(warehouse: Warehouse, name: &str, holder: String, ttl: Duration) -> Self {
        Self {
            dir: warehouse.lease_dir(name),
            warehouse,
            holder,
            ttl,
            held: None,
        }
    }

    /// Renews the lease if this process holds it, takes it if its term has expired or
    /// it has none, and says who holds it.
    pub async fn hold(&mut self) -> Result<Standing> {
        let newest = self.newest().await?;
        if let Some(held) = self.held {
            match &newest {
                Some((term, _)) if *term == held.term => {
                    let until = Instant::now() + self.ttl;
                    self.write(held.term, PutMode::Overwrite).await?;
                    self.held = Some(Held { until, ..held });
                    return Ok(Standing::Held);
                }
                _ => {
                    tracing::warn!(
                        "lost the lease {} to another process: no longer running schedules",
                        self.warehouse.display_path(&self.dir)
                    );
                    self.held = None;
                }
            }
        }
        let next = match newest {
            None => 1,
            Some((term, current)) if current.expires_at_ms <= now_ms() => term + 1,
            Some((_, current)) => {
                return Ok(Standing::Standby {
                    holder: current.holder,
                });
            }
        };
        let until = Instant::now() + self.ttl;
        if self.write(next, PutMode::Create).await? {
            self.held = Some(Held { term: next, until });
            self.forget_before(next).await;
            return Ok(Standing::Held);
        }
        let holder = match self.newest().await? {
            Some((_, term)) => term.holder,
            None => "another process".to_owned(),
        };
        Ok(Standing::Standby { holder })
    }

    /// Whether this process may act as the holder now: it holds a term it renewed
    /// within the time to live.
    pub fn holds(&self) -> bool {
        self.held.is_some_and(|held| Instant::now() < held.until)
    }

    /// Gives the lease up (a clean stop), so a standby takes it at its next look.
    pub async fn release(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let ended = Term {
            holder: self.holder.clone(),
            expires_at_ms: 0,
        };
        if let Err(error) = self.put(held.term, &ended, PutMode::Overwrite).await {
            tracing::warn!("could not give up the lease: {error}; it expires by itself");
        }
    }

    /// The newest term and what it says, if there is any.
    async fn newest(&self) -> Result<Option<(u64, Term)>> {
        let Some(term) = self.terms().await?.into_iter().max() else {
            return Ok(None);
        };
        let path = self.dir.clone().join(paths::lease_term_file(term));
        let location = self.warehouse.display_path(&path);
        let bytes = match self.warehouse.store().get(&path).await {
            Ok(got) => got
                .bytes()
                .await
                .map_err(|error| StorageError::store(&location, &error))?,
            // Removed by a newer holder since the listing: that one holds it.
            Err(object_store::Error::NotFound { .. }) => return Box::pin(self.newest()).await,
            Err(error) => return Err(StorageError::store(&location, &error).into()),
        };
        let stored = serde_json::from_slice(&bytes).map_err(|error| StorageError::Corrupt {
            location,
            reason: error.to_string(),
        })?;
        Ok(Some((term, stored)))
    }

    async fn terms(&self) -> Result<Vec<u64>> {
        let listed: Vec<_> = self
            .warehouse
            .store()
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(|error| {
                StorageError::store(&self.warehouse.display_path(&self.dir), &error)
            })?;
        Ok(listed
            .iter()
            .filter_map(|file| paths::lease_term(file.location.filename()?))
            .collect())
    }

    /// Writes this process's term; false when `mode` is create-only and the term exists.
    async fn write(&self, term: u64, mode: PutMode) -> Result<bool> {
        let stored = Term {
            holder: self.holder.clone(),
            expires_at_ms: now_ms() + self.ttl.as_millis() as u64,
        };
        self.put(term, &stored, mode).await
    }

    async fn put(&self, term: u64, stored: &Term, mode: PutMode) -> Result<bool> {
        let path = self.dir.clone().join(paths::lease_term_file(term));
        let location = self.warehouse.display_path(&path);
        let text = serde_json::to_vec(stored).map_err(|error| StorageError::Corrupt {
            location: location.clone(),
            reason: error.to_string(),
        })?;
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .warehouse
            .store()
            .put_opts(&path, text.into(), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(StorageError::store(&location, &error).into()),
        }
    }

    /// Removes the terms before the one before `term`: they can never be taken again.
    async fn forget_before(&self, term: u64) {
        let Ok(terms) = self.terms().await else {
            return;
        };
        for old in terms.into_iter().filter(|old| *old + 1 < term) {
            let path = self.dir.clone().join(paths::lease_term_file(old));
            let _ = self.warehouse.store().delete(&path).await;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(warehouse: &Warehouse, holder: &str, ttl: Duration) -> Lease {
        Lease::new(warehouse.clone(), "orchestrator", holder.to_owned(), ttl)
    }

    #[tokio::test]
    async fn one_process_holds_the_lease_and_a_standby_takes_it_when_it_expires() {
        let warehouse = Warehouse::open("memory://lease/wh").unwrap();
        let mut first = lease(&warehouse, "first", Duration::from_millis(300));
        let mut second = lease(&warehouse, "second", Duration::from_millis(300));
        assert_eq!(first.hold().await.unwrap(), Standing::Held);
        assert!(first.holds());
        assert_eq!(
            second.hold().await.unwrap(),
            Standing::Standby {
                holder: "first".into()
            }
        );
        // Renewed, the lease stays with its holder past its first time to live.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(first.hold().await.unwrap(), Standing::Held);
            assert!(matches!(
                second.hold().await.unwrap(),
                Standing::Standby { .. }
            ));
        }
        // The holder stops renewing (it died): the standby takes the next term.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!first.holds(), "a holder that did not renew stops acting");
        assert_eq!(second.hold().await.unwrap(), Standing::Held);
        assert_eq!(
            first.hold().await.unwrap(),
            Standing::Standby {
                holder: "second".into()
            },
            "the old holder finds it lost the lease"
        );
        // A clean stop hands over at once.
        second.release().await;
        assert_eq!(first.hold().await.unwrap(), Standing::Held);
    }

    #[tokio::test]
    async fn of_two_processes_taking_an_expired_term_exactly_one_gets_it() {
        let warehouse = Warehouse::open("memory://lease-race/wh").unwrap();
        for round in 0..20 {
            let named = |holder: &str, ttl| {
                Lease::new(
                    warehouse.clone(),
                    &format!("race-{round}"),
                    holder.to_owned(),
                    ttl,
                )
            };
            // Every other round, the two race for a term that expired; else for the first.
            if round % 2 == 1 {
                let mut old = named("old", Duration::from_millis(1));
                assert_eq!(old.hold().await.unwrap(), Standing::Held);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut a = named("a", Duration::from_secs(10));
            let mut b = named("b", Duration::from_secs(10));
            let (a, b) = tokio::join!(a.hold(), b.hold());
            let held = [a.unwrap(), b.unwrap()]
                .iter()
                .filter(|standing| **standing == Standing::Held)
                .count();
            assert_eq!(held, 1, "round {round}");
        }
    }

    #[tokio::test]
    async fn a_corrupt_term_is_an_error_that_names_it_and_takes_nothing() {
        let warehouse = Warehouse::open("memory://lease-corrupt/wh").unwrap();
        let path = warehouse
            .lease_dir("orchestrator")
            .join(paths::lease_term_file(1));
        warehouse.store().put(&path, "{".into()).await.unwrap();
        let mut lease = lease(&warehouse, "a", Duration::from_secs(10));
        let error = lease.hold().await.unwrap_err();
        assert!(
            error.to_string().contains("00000000000000000001.json"),
            "{error}"
        );
        assert!(!lease.holds(), "a lease that cannot be read is not held");
    }
}
