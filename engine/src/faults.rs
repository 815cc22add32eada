//! Fault injection, for tests that kill or race a run at a chosen moment: with
//! `STRATA_PAUSE_BEFORE_COMMIT=<layer>.<table>` set, that table's build says so on
//! stderr once its files are written, and waits `STRATA_PAUSE_SECONDS` (60 by default)
//! before committing them. With `STRATA_READ_BATCH_DELAY_MS` set, reading a Kafka
//! partition waits that long after each batch of messages, so a test can kill an
//! executor while it reads.

use std::time::Duration;

use strata_language::TableName;

/// The environment variable that names the table to pause.
pub const PAUSE_BEFORE_COMMIT: &str = "STRATA_PAUSE_BEFORE_COMMIT";

/// The environment variable that sets how long the pause lasts, in seconds.
pub const PAUSE_SECONDS: &str = "STRATA_PAUSE_SECONDS";

/// What the paused build prints, before the table's name.
pub const PAUSED: &str = "strata: paused before committing ";

/// Waits, if this table's build is the one to pause.
pub async fn before_commit(table: &TableName) {
    if std::env::var(PAUSE_BEFORE_COMMIT).is_ok_and(|name| name == table.to_string()) {
        let seconds = std::env::var(PAUSE_SECONDS)
            .ok()
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or(60);
        eprintln!("{PAUSED}{table}");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
}

/// The environment variable that slows reading a Kafka partition, in milliseconds per
/// batch of messages.
pub const READ_BATCH_DELAY_MS: &str = "STRATA_READ_BATCH_DELAY_MS";

/// Waits after a batch of messages, if reads are to be slowed.
pub fn after_read_batch() {
    if let Some(ms) = std::env::var(READ_BATCH_DELAY_MS)
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}
