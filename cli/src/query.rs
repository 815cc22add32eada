//! `strata query`: one SQL statement on an embedded DataFusion context.

use std::io::Write;
use std::path::PathBuf;

use arrow::csv::WriterBuilder as CsvWriterBuilder;
use arrow::json::{ArrayWriter, WriterBuilder as JsonWriterBuilder};
use arrow::util::pretty::pretty_format_batches;
use clap::{Args, ValueEnum};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;

use crate::error::CliError;

/// Arguments of `strata query`.
#[derive(Args)]
pub struct QueryArgs {
    /// The SQL statement to run.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub sql: Option<String>,
    /// Read the SQL statement from this file instead.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, env = "STRATA_FORMAT")]
    pub format: OutputFormat,
}

/// Result formats: a table for people, CSV and JSON for other programs.
#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// Plans and runs the statement, then prints every result row.
pub async fn run(args: QueryArgs, out: &mut impl Write) -> Result<(), CliError> {
    let sql = match (args.sql, &args.file) {
        (Some(sql), _) => sql,
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|source| CliError::ReadSql {
                path: path.clone(),
                source,
            })?
        }
        (None, None) => unreachable!("clap requires SQL or --file"),
    };
    let ctx = SessionContext::new();
    strata_udfs::register_all(&ctx);
    let batches = ctx.sql(&sql).await?.collect().await?;
    write_batches(&batches, args.format, out)
}

/// Prints result batches in the chosen format.
pub(crate) fn write_batches(
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut impl Write,
) -> Result<(), CliError> {
    match format {
        OutputFormat::Table => {
            let table = pretty_format_batches(batches).map_err(|source| CliError::Format {
                format: "table",
                source,
            })?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            let mut writer = CsvWriterBuilder::new().with_header(true).build(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(|source| CliError::Format {
                    format: "csv",
                    source,
                })?;
            }
        }
        OutputFormat::Json => {
            let mut writer: ArrayWriter<_> = JsonWriterBuilder::new()
                .with_explicit_nulls(true)
                .build(&mut *out);
            let json_error = |source| CliError::Format {
                format: "json",
                source,
            };
            for batch in batches {
                writer.write(batch).map_err(json_error)?;
            }
            writer.finish().map_err(json_error)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
