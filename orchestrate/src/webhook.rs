//! Telling a webhook that a schedule failed or recovered: one JSON POST, as chat tools
//! and incident systems take them.

use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};

/// How long a webhook may take to answer before the notice is given up.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A run failed and so did its retries.
    Failed,
    /// A run succeeded after a failed one.
    Recovered,
}

/// The body of a webhook call.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub event: Event,
    pub schedule: String,
    pub run_id: String,
    /// Runs tried for this firing, retries included.
    pub attempts: u32,
    pub warehouse: String,
    /// The run's failures, one line per table; empty on recovery.
    pub errors: Vec<String>,
    /// The run report in the warehouse.
    pub report: String,
    pub at: String,
}

impl Notice {
    /// Sends the notice to `url`; an error says why it was not taken.
    pub async fn send(&self, url: &str) -> Result<()> {
        let failed = |why: String| Error::Webhook {
            url: url.to_owned(),
            why,
        };
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|error| failed(error.to_string()))?;
        let body = serde_json::to_vec(self).map_err(|error| failed(error.to_string()))?;
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|error| failed(error.to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(failed(format!("it answered {}", response.status())))
        }
    }
}
