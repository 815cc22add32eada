//! Carrying out an [`ErasurePlan`]: the subject goes on the suppression list first (so
//! a run that starts during the erasure ingests none of its rows), then its rows leave
//! each holding table and its set-aside tables, the tables computed from them are
//! recomputed by a run that ingests nothing, and the report is saved in the warehouse.

use std::time::{SystemTime, UNIX_EPOCH};

use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use strata_engine::run::{RunOptions, TableStatus, run_pipeline};
use strata_engine::{Compiled, Engine};
use strata_language::{Format, TableName};
use strata_storage::erasure::{self, RawErased};
use strata_storage::{Suppressed, Suppressions, Warehouse};

use crate::error::{ErasureError, Result};
use crate::plan::{ErasurePlan, Subject};

/// What an erasure does beyond removing the rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Remove at once the files that older versions of the tables read, instead of
    /// leaving them for the tables' retention (time travel before the erasure ends).
    pub vacuum: bool,
}

/// What happened to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A raw table's files holding the subject were rewritten without it.
    Rewritten,
    /// A Delta table's rows holding the subject were deleted.
    Deleted,
    /// Computed from the subject's rows: recomputed without them.
    Recomputed,
    /// Computed from the subject's rows, and not recomputed (see `note`).
    Kept,
}

/// One table in an erasure's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableErased {
    pub table: String,
    pub action: Action,
    /// The columns the subject was found by.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    pub rows_removed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub rejects_removed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub files_rewritten: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl TableErased {
    fn new(table: &TableName, action: Action) -> Self {
        Self {
            table: table.to_string(),
            action,
            columns: Vec::new(),
            rows_removed: 0,
            rejects_removed: 0,
            files_rewritten: 0,
            note: None,
        }
    }
}

/// What an erasure did, saved as `_strata/erasures/<erasure>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    pub erasure: String,
    pub subject: Subject,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    /// Landing tables with the subject's column: their files are left as delivered,
    /// and every later ingest drops the subject's rows.
    pub landing: Vec<String>,
    pub tables: Vec<TableErased>,
    /// The run that recomputed the derived tables.
    pub recompute_run: Option<String>,
    /// Whether older versions' files were removed at once.
    pub vacuumed: bool,
    pub files_removed: u64,
    /// Every holding table lost the subject and every derived table was recomputed.
    pub complete: bool,
}

impl ErasureReport {
    /// Rows removed from all tables, rejects included.
    pub fn rows_removed(&self) -> u64 {
        self.tables
            .iter()
            .map(|table| table.rows_removed + table.rejects_removed)
            .sum()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_millis() as u64)
}

/// Erases the plan's subject from the warehouse.
pub async fn forget(
    compiled: &Compiled,
    warehouse: &Warehouse,
    engine: &Engine,
    plan: &ErasurePlan,
    options: Options,
) -> Result<ErasureReport> {
    let started_at_ms = now_ms();
    let erasure = format!("erasure-{started_at_ms}-{}", std::process::id());
    let subject = &plan.subject;
    Suppressions::add(
        warehouse,
        &Suppressed {
            column: subject.column.clone(),
            value: subject.value.clone(),
            erasure: erasure.clone(),
            erased_at_ms: started_at_ms,
        },
    )
    .await?;

    let mut tables = Vec::new();
    let mut raw_rewritten: Vec<TableName> = Vec::new();
    let mut delta_touched: Vec<TableName> = Vec::new();
    for holding in &plan.holding {
        let rows = erasure::Subject {
            columns: holding.columns.clone(),
            value: subject.value.clone(),
        };
        let dir = warehouse.table(&holding.table);
        if holding.table.layer.format() == Some(Format::Avro) {
            let RawErased {
                rows: removed,
                rejects,
                files,
            } = erasure::erase_raw(&dir, &rows, &erasure).await?;
            let mut entry = TableErased::new(&holding.table, Action::Rewritten);
            entry.columns = holding.columns.clone();
            entry.rows_removed = removed;
            entry.rejects_removed = rejects;
            entry.files_rewritten = files;
            tables.push(entry);
            raw_rewritten.push(holding.table.clone());
            continue;
        }
        let own = [
            holding.table.clone(),
            holding.table.quarantine(),
            holding.table.deleted(),
        ];
        for (at, table) in own.iter().enumerate() {
            let Some(removed) = erasure::erase_delta(&warehouse.table(table), &rows).await? else {
                if at == 0 {
                    let mut entry = TableErased::new(table, Action::Deleted);
                    entry.note = Some("not built yet".to_owned());
                    tables.push(entry);
                }
                continue;
            };
            let mut entry = TableErased::new(table, Action::Deleted);
            entry.columns = holding.columns.clone();
            entry.rows_removed = removed;
            tables.push(entry);
            delta_touched.push(table.clone());
        }
    }

    let mut complete = true;
    let mut recompute_run = None;
    if !plan.recomputed.is_empty() {
        let options = RunOptions {
            select: plan.recomputed.iter().map(ToString::to_string).collect(),
            skip_ingest: true,
            ..RunOptions::default()
        };
        let run = run_pipeline(compiled, warehouse, engine, &options, &|_| {}).await?;
        for table in &plan.recomputed {
            let name = table.to_string();
            let built = run.tables.iter().find(|report| report.table == name);
            let status = built.map(|report| report.status);
            let ok = matches!(status, Some(TableStatus::Built | TableStatus::UpToDate));
            complete &= ok;
            // A holding table both lost rows and was recomputed: one entry says both.
            let at = match tables.iter().position(|entry| entry.table == name) {
                Some(at) => at,
                None => {
                    tables.push(TableErased::new(table, Action::Recomputed));
                    delta_touched.push(table.clone());
                    tables.len() - 1
                }
            };
            let entry = &mut tables[at];
            entry.note = match built {
                Some(_) if ok && entry.action == Action::Recomputed => None,
                Some(_) if ok => Some("then recomputed".to_owned()),
                Some(report) => Some(format!(
                    "not recomputed: {}",
                    report.error.clone().unwrap_or_default()
                )),
                None => Some("not recomputed".to_owned()),
            };
        }
        recompute_run = Some(run.run_id);
    }
    for (table, why) in &plan.kept {
        let mut entry = TableErased::new(table, Action::Kept);
        entry.note = Some(format!(
            "still holds what it computed from the subject's rows: {why}"
        ));
        tables.push(entry);
        complete = false;
    }

    let mut files_removed = 0;
    if options.vacuum {
        for table in &raw_rewritten {
            files_removed += erasure::vacuum_raw(&warehouse.table(table)).await?;
        }
        for table in &delta_touched {
            files_removed += erasure::vacuum_delta(&warehouse.table(table)).await?;
        }
    }

    let report = ErasureReport {
        erasure,
        subject: subject.clone(),
        started_at_ms,
        duration_ms: now_ms().saturating_sub(started_at_ms),
        landing: plan.landing.iter().map(ToString::to_string).collect(),
        tables,
        recompute_run,
        vacuumed: options.vacuum,
        files_removed,
        complete,
    };
    save(warehouse, &report).await?;
    Ok(report)
}

/// Writes the report beside the warehouse's other records.
async fn save(warehouse: &Warehouse, report: &ErasureReport) -> Result<()> {
    let path = warehouse.erasure_report(&report.erasure);
    let location = warehouse.display_path(&path);
    let failed = |reason: String| ErasureError::Report {
        location: location.clone(),
        reason,
    };
    let body = serde_json::to_vec_pretty(report).map_err(|error| failed(error.to_string()))?;
    warehouse
        .store()
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|error| failed(error.to_string()))?;
    Ok(())
}
