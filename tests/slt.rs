//! Runs every `.slt` file under `tests/slt` on an embedded context with Strata's functions.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

/// Decimal places that float results are rounded to, so expectations need not carry float noise.
const FLOAT_DECIMALS: usize = 9;

/// One fresh DataFusion session per `.slt` file.
struct Strata {
    ctx: SessionContext,
}

#[async_trait::async_trait]
impl AsyncDB for Strata {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let frame = self.ctx.sql(sql).await?;
        let is_query = !frame.schema().fields().is_empty();
        let batches = frame.collect().await?;
        if !is_query {
            return Ok(DBOutput::StatementComplete(0));
        }
        let schema = batches
            .first()
            .map(|batch| batch.schema())
            .unwrap_or_else(|| std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty()));
        let types = schema
            .fields()
            .iter()
            .map(|field| column_type(field.data_type()))
            .collect();
        let mut rows = Vec::new();
        for batch in &batches {
            let columns = batch
                .columns()
                .iter()
                .map(render_column)
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(columns.iter().map(|column| column[row].clone()).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata"
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    if data_type.is_integer() {
        DefaultColumnType::Integer
    } else if data_type.is_floating() || matches!(data_type, DataType::Decimal128(_, _)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

/// Renders a column as text; floats are rounded and empty strings shown as `(empty)`.
fn render_column(array: &ArrayRef) -> Result<Vec<String>, DataFusionError> {
    let render_float = |value: f64| {
        let text = format!("{value:.FLOAT_DECIMALS$}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        if text == "-0" {
            "0".to_owned()
        } else {
            text.to_owned()
        }
    };
    let rendered = match array.data_type() {
        DataType::Float64 => (0..array.len())
            .map(|row| match array.is_null(row) {
                true => "NULL".to_owned(),
                false => render_float(array.as_primitive::<Float64Type>().value(row)),
            })
            .collect(),
        DataType::Float32 => (0..array.len())
            .map(|row| match array.is_null(row) {
                true => "NULL".to_owned(),
                false => render_float(f64::from(array.as_primitive::<Float32Type>().value(row))),
            })
            .collect(),
        _ => {
            let options = FormatOptions::default().with_null("NULL");
            let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
            (0..array.len())
                .map(|row| {
                    let text = formatter.value(row).to_string();
                    if text.is_empty() {
                        "(empty)".to_owned()
                    } else {
                        text
                    }
                })
                .collect()
        }
    };
    Ok(rendered)
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/slt")
}

#[tokio::test]
async fn sqllogictests() {
    let dir = slt_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "slt"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no .slt files found in {}",
        dir.display()
    );

    let data_dir = dir
        .join("data")
        .canonicalize()
        .expect("tests/slt/data exists");
    let mut failures = Vec::new();
    for file in &files {
        let mut runner = Runner::new(|| async {
            let ctx = SessionContext::new();
            strata_udfs::register_all(&ctx);
            Ok(Strata { ctx })
        });
        runner.set_var("TEST_DATA".to_owned(), data_dir.display().to_string());
        match runner.run_file_async(file).await {
            Ok(()) => println!("ok   {}", file.display()),
            Err(error) => {
                println!("FAIL {}", file.display());
                failures.push(format!("{}: {error}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} .slt file(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
