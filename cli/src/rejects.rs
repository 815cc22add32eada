//! `strata rejects`: print the landing rows a raw table set aside, and why.

use std::io::Write;

use clap::Args;
use datafusion::prelude::{SessionContext, col, lit};
use strata_language::{Layer, TableName, did_you_mean};
use strata_storage::{StoreRegistry, Warehouse, catalog, raw_table};

use crate::error::CliError;
use crate::query::{OutputFormat, write_batches};

/// How much of a rejected row's text the table format shows (the others show it all).
const SHOWN_TEXT: i64 = 60;

/// Arguments of `strata rejects`.
#[derive(Args)]
pub(crate) struct RejectsArgs {
    /// The raw table whose rejected rows to print, as `raw.<table>`.
    #[arg(value_name = "TABLE")]
    pub table: String,
    /// Warehouse root.
    #[arg(long, env = "STRATA_WAREHOUSE")]
    pub warehouse: String,
    /// Only the rows this run rejected.
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,
    /// How to print the rows.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, env = "STRATA_FORMAT")]
    pub format: OutputFormat,
}

/// Prints the table's rejects, oldest run first, by file and line.
pub(crate) async fn run(args: RejectsArgs, out: &mut impl Write) -> Result<(), CliError> {
    let warehouse = crate::warehouse::open(&args.warehouse).await?;
    let table = raw_table_name(&args.table, &warehouse).await?;
    let ctx = SessionContext::new_with_config_rt(Default::default(), StoreRegistry::runtime());
    let Some(provider) =
        raw_table::rejects_provider(&warehouse.table(&table), &ctx.state()).await?
    else {
        writeln!(out, "{table} has no rejected rows")?;
        return Ok(());
    };
    let mut rows = ctx.read_table(provider)?;
    if let Some(run) = &args.run {
        rows = rows.filter(col("run_id").eq(lit(run.as_str())))?;
    }
    let text = match args.format {
        OutputFormat::Table => {
            datafusion::functions::expr_fn::left(col("raw_text"), lit(SHOWN_TEXT))
        }
        _ => col("raw_text"),
    };
    let batches = rows
        .sort_by(vec![col("run_id"), col("landing_file"), col("line")])?
        .select(vec![
            col("run_id"),
            col("landing_file"),
            col("line"),
            col("byte_offset"),
            col("column"),
            col("reason"),
            text.alias("raw_text"),
        ])?
        .collect()
        .await?;
    if batches.iter().all(|batch| batch.num_rows() == 0) {
        let run = args.run.as_deref().unwrap_or_default();
        writeln!(out, "{table} has no rows rejected by run {run}")?;
        return Ok(());
    }
    write_batches(&batches, args.format, out)
}

/// The raw table a user named (`raw.events`, or its rejects table `raw.events__rejects`),
/// if the warehouse has it.
async fn raw_table_name(name: &str, warehouse: &Warehouse) -> Result<TableName, CliError> {
    let unknown = |why: String| CliError::UnknownTable(why);
    let (layer, table) = name.trim().split_once('.').ok_or_else(|| {
        unknown(format!(
            "{name} is not a table name; name a raw table as raw.<table>"
        ))
    })?;
    if Layer::parse(layer) != Some(Layer::Raw) {
        return Err(unknown(format!(
            "rejected rows are kept for raw tables; {name} is not in the raw layer"
        )));
    }
    let table = TableName {
        layer: Layer::Raw,
        name: table.to_owned(),
    };
    let table = table.rejects_of().unwrap_or(table);
    if catalog::find(warehouse, &table, None).await.is_some() {
        return Ok(table);
    }
    let known: Vec<String> = catalog::published_tables(warehouse)
        .await?
        .into_iter()
        .filter(|published| published.name.layer == Layer::Raw && !published.is_set_aside())
        .map(|published| published.name.to_string())
        .collect();
    let hint = did_you_mean(name, known.iter().map(String::as_str))
        .map(|candidate| format!(" — did you mean {candidate}?"))
        .unwrap_or_default();
    Err(unknown(format!(
        "the warehouse {warehouse} has no raw table {table}{hint}"
    )))
}
