//! `strata query`: one SQL statement on an embedded DataFusion context, over a
//! warehouse's published tables when given one, as one of its readers sees them.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::csv::WriterBuilder as CsvWriterBuilder;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::json::{ArrayWriter, WriterBuilder as JsonWriterBuilder};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow::util::pretty::pretty_format_batches;
use clap::{Args, ValueEnum};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use strata_access::catalog::reader_session;
use strata_access::{Reader, Viewer, Visibility};
use strata_flightsql::{DEFAULT_SCHEMA, ServerConfig, viewer_of};
use strata_storage::Warehouse;
use strata_storage::delta_publish::DeltaReader;

use crate::error::CliError;

/// Arguments of `strata query`.
#[derive(Args)]
pub(crate) struct QueryArgs {
    /// The SQL statement to run.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub sql: Option<String>,
    /// Read the SQL statement from this file instead.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, env = "STRATA_FORMAT")]
    pub format: OutputFormat,
    /// Query this warehouse's published tables (catalog `strata`, schemas raw, enriched
    /// and ranked), as they are stored unless `--as` names a reader.
    #[arg(long, value_name = "DIR_OR_URL")]
    pub warehouse: Option<String>,
    /// Read as this user of the `--config` file, through the tables' masks and row
    /// filters, as Flight SQL and the console show them to that user.
    #[arg(long = "as", value_name = "USER", requires_all = ["warehouse", "config"])]
    pub as_user: Option<String>,
    /// The Flight SQL config file that gives each user a role.
    #[arg(long, value_name = "PATH", requires = "as_user")]
    pub config: Option<PathBuf>,
}

/// Result formats: a table for people, CSV and JSON for other programs.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    Table,
    Csv,
    Json,
}

/// Plans and runs the statement, then prints every result row.
pub(crate) async fn run(args: QueryArgs, out: &mut impl Write) -> Result<(), CliError> {
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
    let ctx = match &args.warehouse {
        Some(location) => {
            let reader = match (&args.as_user, &args.config) {
                (Some(user), Some(config)) => Reader::Viewer(viewer(user, config)?),
                _ => Reader::Unrestricted,
            };
            warehouse_context(&crate::warehouse::open(location).await?, reader)
        }
        None => SessionContext::new(),
    };
    strata_udfs::register_all(&ctx);
    let batches = ctx.sql(&sql).await?.collect().await?;
    write_batches(&batches, args.format, out)
}

/// `user` with the role `config` gives them.
fn viewer(user: &str, config: &std::path::Path) -> Result<Viewer, CliError> {
    let config = ServerConfig::from_file(config)?;
    viewer_of(&config.users, user).ok_or_else(|| {
        CliError::Arguments(format!(
            "--as {user}: no such user in {}",
            config_name(config.users.iter().map(|known| known.name.as_str()))
        ))
    })
}

/// The users a config file has, for an error that names them.
fn config_name<'a>(users: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = users.collect();
    if names.is_empty() {
        "the config file, which has no users".to_owned()
    } else {
        format!("the config file (its users: {})", names.join(", "))
    }
}

/// A session whose default catalog is the warehouse as `reader` sees it.
fn warehouse_context(warehouse: &Warehouse, reader: Reader) -> SessionContext {
    let visibility = Visibility::new(warehouse.clone(), true, DeltaReader::Native);
    reader_session(visibility, reader, DEFAULT_SCHEMA)
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
            let csv_error = |source| CliError::Format {
                format: "csv",
                source,
            };
            for batch in batches {
                writer
                    .write(&nested_as_text(batch).map_err(csv_error)?)
                    .map_err(csv_error)?;
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

/// The batch with its lists, structs and maps as text, as the table shows them
/// (`[senior, rust]`): a CSV field holds one value, and CSV writers refuse nested ones.
fn nested_as_text(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|field| field.data_type().is_nested())
    {
        return Ok(batch.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !field.data_type().is_nested() {
            fields.push(Arc::clone(field));
            columns.push(Arc::clone(column));
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
        let text: StringArray = (0..column.len())
            .map(|row| {
                column
                    .is_valid(row)
                    .then(|| formatter.value(row).to_string())
            })
            .collect();
        fields.push(Arc::new(Field::new(field.name(), DataType::Utf8, true)));
        columns.push(Arc::new(text) as ArrayRef);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn csv_shows_lists_as_the_table_does_and_json_keeps_them() {
        let ctx = SessionContext::new();
        strata_udfs::register_all(&ctx);
        let batches = ctx
            .sql("SELECT 1 AS n, tokenize('Senior Rust/SQL engineer') AS tokens, CAST(NULL AS VARCHAR[]) AS none")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut csv = Vec::new();
        write_batches(&batches, OutputFormat::Csv, &mut csv).unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "n,tokens,none\n1,\"[senior, rust, sql, engineer]\",\n"
        );
        let mut json = Vec::new();
        write_batches(&batches, OutputFormat::Json, &mut json).unwrap();
        let json = String::from_utf8(json).unwrap();
        assert!(
            json.contains(r#""tokens":["senior","rust","sql","engineer"]"#),
            "{json}"
        );
    }
}
