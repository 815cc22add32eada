//! `strata tidy`: compact a warehouse's small Delta files and remove the files no
//! version within each table's retention reads, as a continuous run does every 100
//! batches; for tables committed to often by schedules or many small runs.

use std::io::Write;

use clap::Args;
use strata_language::{TableName, did_you_mean};
use strata_storage::catalog;
use strata_storage::maintenance::Tidied;

use crate::error::CliError;

/// Arguments of `strata tidy`.
#[derive(Args)]
pub(crate) struct TidyArgs {
    /// The tables to tidy, as `layer.table` [default: every table of the warehouse].
    #[arg(value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Warehouse root.
    #[arg(long, env = "STRATA_WAREHOUSE")]
    pub warehouse: String,
    /// How long raw tables keep the files a compaction replaced, for reads begun
    /// before it; Delta tables keep theirs for their `delta.deletedFileRetentionDuration`.
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    pub retention: std::time::Duration,
}

/// Tidies each table and says what it did; a table that cannot be tidied fails the
/// command after the others are done.
pub(crate) async fn run(args: TidyArgs, out: &mut impl Write) -> Result<(), CliError> {
    let warehouse = crate::warehouse::open(&args.warehouse).await?;
    let published: Vec<TableName> = catalog::published_tables(&warehouse)
        .await?
        .into_iter()
        .filter(|table| !table.is_set_aside())
        .map(|table| table.name)
        .collect();
    if published.is_empty() {
        return Err(CliError::UnknownTable(format!(
            "{warehouse} has no tables to tidy; is the warehouse path right?"
        )));
    }
    let tables = if args.tables.is_empty() {
        published
    } else {
        args.tables
            .iter()
            .map(|name| known(name, &published))
            .collect::<Result<_, _>>()?
    };
    let mut failed = Vec::new();
    let mut total = Tidied::default();
    for table in &tables {
        match strata_engine::run::tidy(&warehouse, table, args.retention).await {
            Ok(tidied) => {
                writeln!(
                    out,
                    "{table}: {} small file(s) compacted, {} unread file(s) removed",
                    tidied.compacted, tidied.removed
                )?;
                total += tidied;
            }
            Err(error) => {
                writeln!(out, "{table}: {error}")?;
                failed.push(table.to_string());
            }
        }
    }
    writeln!(
        out,
        "tidied {} table(s): {} file(s) compacted, {} removed",
        tables.len() - failed.len(),
        total.compacted,
        total.removed
    )?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Tidy(failed.join(", ")))
    }
}

/// The published table a name names, or an error that says which ones there are.
fn known(name: &str, published: &[TableName]) -> Result<TableName, CliError> {
    let found = TableName::parse(name.trim()).filter(|table| published.contains(table));
    found.ok_or_else(|| {
        let names: Vec<String> = published.iter().map(ToString::to_string).collect();
        let hint = did_you_mean(name, names.iter().map(String::as_str))
            .map(|candidate| format!(" — did you mean {candidate}?"))
            .unwrap_or_default();
        CliError::UnknownTable(format!("the warehouse has no table {name}{hint}"))
    })
}
