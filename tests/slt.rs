//! Runs every `.slt` file under `tests/slt` on an embedded context with Strata's
//! functions, and every `.slt` file under `tests/pipelines` as a pipeline in a fresh
//! warehouse (see [`PipelineDb`] for the records those files use).

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
        query(&self.ctx, sql).await
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata"
    }
}

/// Runs one statement and renders its rows the way every `.slt` file expects them.
async fn query(
    ctx: &SessionContext,
    sql: &str,
) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
    let frame = ctx.sql(sql).await?;
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

/// A pipeline built in a fresh warehouse, record by record:
///
/// - `statement ok` with `LAND <path>` on its first line writes the lines after it to
///   that landing file, relative to the warehouse;
/// - `statement ok` (or `statement error <message>`) with `RUN` compiles and runs every
///   pipeline statement given so far, as `strata run` does; a run with a failed table
///   is an error naming it;
/// - any other `statement ok` adds that statement to the pipeline;
/// - `query` reads the published tables (`enriched.x`, …) and `last_run`, the table
///   reports of the last run (`table`, `status`, `rows_read`, `rows_written`,
///   `rows_dropped`, `rows_quarantined`).
struct PipelineDb {
    warehouse: PathBuf,
    pipeline: String,
    report: Option<strata_engine::run::RunReport>,
}

impl PipelineDb {
    fn new(name: &str) -> Self {
        let warehouse = crate::support::workdir(&format!("pipeline-slt-{name}"));
        std::fs::create_dir_all(&warehouse).expect("a fresh warehouse");
        Self {
            warehouse,
            pipeline: String::new(),
            report: None,
        }
    }

    async fn build(&mut self) -> Result<(), DataFusionError> {
        use strata_engine::run::{RunOptions, run_pipeline};
        use strata_engine::{Engine, compile};
        let mut sources = strata_language::Sources::default();
        sources.add("pipeline.sql", self.pipeline.clone());
        let warehouse = strata_storage::Warehouse::local(&self.warehouse);
        let failed = |error: strata_engine::EngineError| match error {
            strata_engine::EngineError::Language(strata_language::LanguageError::Invalid(
                problems,
            )) => DataFusionError::Plan(
                problems
                    .iter()
                    .map(|problem| problem.render(&sources))
                    .collect(),
            ),
            other => DataFusionError::External(Box::new(other)),
        };
        let engine = Engine::Embedded;
        let compiled = compile(&sources, &warehouse, &engine)
            .await
            .map_err(failed)?;
        let report = run_pipeline(
            &compiled,
            &warehouse,
            &engine,
            &RunOptions::default(),
            &|_| {},
        )
        .await
        .map_err(failed)?;
        let errors = report.failures();
        self.report = Some(report);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DataFusionError::Execution(errors.join("; ")))
        }
    }

    /// A session with the warehouse's published tables and the last run's reports.
    async fn session(&self) -> Result<SessionContext, DataFusionError> {
        use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
        use strata_storage::catalog::{open, published_tables};
        use strata_storage::delta_publish::DeltaReader;
        let ctx = SessionContext::new();
        strata_udfs::register_all(&ctx);
        strata_engine::compile::register_layers(&ctx)?;
        let warehouse = strata_storage::Warehouse::local(&self.warehouse);
        for table in published_tables(&warehouse).await? {
            let provider = open(&table, None, &ctx.state(), DeltaReader::Native, None).await?;
            ctx.register_table(table.name.to_string().as_str(), provider)?;
        }
        if let Some(report) = &self.report {
            let tables = &report.tables;
            let count = |pick: fn(&strata_engine::run::TableReport) -> u64| {
                std::sync::Arc::new(UInt64Array::from_iter_values(tables.iter().map(pick)))
                    as ArrayRef
            };
            let batch = RecordBatch::try_from_iter([
                (
                    "table",
                    std::sync::Arc::new(StringArray::from_iter_values(
                        tables.iter().map(|t| t.table.as_str()),
                    )) as ArrayRef,
                ),
                (
                    "status",
                    std::sync::Arc::new(StringArray::from_iter_values(tables.iter().map(|t| {
                        serde_json::to_value(t.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    }))) as ArrayRef,
                ),
                ("rows_read", count(|t| t.rows_read)),
                ("rows_written", count(|t| t.rows_written)),
                ("rows_dropped", count(|t| t.rows_dropped)),
                ("rows_quarantined", count(|t| t.rows_quarantined)),
                ("rows_rejected", count(|t| t.rows_rejected)),
                ("files_ingested", count(|t| t.files_ingested)),
                ("files_partly_rejected", count(|t| t.files_partly_rejected)),
                ("files_rejected", count(|t| t.files_rejected)),
            ])?;
            ctx.register_batch("last_run", batch)?;
        }
        Ok(ctx)
    }
}

#[async_trait::async_trait]
impl AsyncDB for PipelineDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let text = sql.trim();
        if let Some(rest) = text.strip_prefix("LAND ") {
            let (path, contents) = rest.split_once('\n').unwrap_or((rest, ""));
            let file = self.warehouse.join(path.trim());
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&file, format!("{contents}\n"))?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if text == "RUN" {
            self.build().await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        if text.starts_with("CREATE ") {
            self.pipeline.push_str(text);
            self.pipeline.push_str(";\n");
            return Ok(DBOutput::StatementComplete(0));
        }
        query(&self.session().await?, text).await
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata-pipeline"
    }
}

#[tokio::test]
async fn pipeline_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pipelines");
    let files = slt_files(&dir);
    assert!(
        files.len() >= 4,
        "expected the pipeline golden files in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut runner = Runner::new(|| {
            let name = name.clone();
            async move { Ok(PipelineDb::new(&name)) }
        });
        match runner.run_file_async(file).await {
            Ok(()) => println!("ok   {}", file.display()),
            Err(error) => failures.push(format!("{}: {error}", file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} pipeline golden file(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The `.slt` files of a directory, sorted.
fn slt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "slt"))
        .collect();
    files.sort();
    files
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/slt")
}

#[tokio::test]
async fn sqllogictests() {
    let dir = slt_dir();
    let files = slt_files(&dir);
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
