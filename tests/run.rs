//! `strata run` on the recruitment example's raw layer, read back with Python's
//! `fastavro` (installed by `scripts/test`), an Avro reader independent of Strata.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{example, manifest_count, stderr, stdout, strata, table_report, workdir};

const RAW_TABLES: &str = "raw.events,raw.candidates,raw.jobs,raw.searches";

/// A warehouse with freshly generated landing data.
fn warehouse(name: &str) -> PathBuf {
    let dir = workdir(name);
    let output = strata(&["gen", "--scale", "0.002", "--out", dir.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    dir
}

/// Rows in every Avro file under a directory, counted by fastavro.
pub(crate) fn fastavro_rows(dir: &Path) -> u64 {
    // `_rejects/` holds the table's rejected rows, not its data.
    let script = r#"
import sys, glob, fastavro
total = 0
for path in glob.glob(sys.argv[1] + '/**/*.avro', recursive=True):
    if '/_rejects/' in path:
        continue
    with open(path, 'rb') as f:
        total += sum(1 for _ in fastavro.reader(f))
print(total)
"#;
    let output = Command::new("python3")
        .args(["-c", script, dir.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "fastavro failed: {}",
        stderr(&output)
    );
    stdout(&output).trim().parse().unwrap()
}

#[test]
fn raw_tables_ingest_each_landing_file_once_and_reject_the_malformed_one() {
    let dir = warehouse("run-raw");
    let wh = dir.to_str().unwrap();
    let output = strata(&["run", &example(), "--warehouse", wh, "--select", RAW_TABLES]);
    let stdout = stdout(&output);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        stderr(&output)
    );

    // Every good landing row reached the raw zone, as fastavro reads it; the
    // unparsable ones are rejects.
    let events = manifest_count(&dir, "events");
    let unparsable = manifest_count(&dir, "events_unparsable");
    let candidates = manifest_count(&dir, "candidates") + manifest_count(&dir, "candidate_updates");
    assert_eq!(fastavro_rows(&dir.join("raw/events")), events - unparsable);
    assert_eq!(fastavro_rows(&dir.join("raw/candidates")), candidates);
    assert_eq!(
        fastavro_rows(&dir.join("raw/jobs")),
        manifest_count(&dir, "jobs")
    );
    assert_eq!(
        fastavro_rows(&dir.join("raw/searches")),
        manifest_count(&dir, "searches")
    );

    // The summary says the same; the cut-off delivery is named with its reason.
    let raw_events = table_report(&stdout, "raw.events");
    assert_eq!(raw_events["layer"], "raw");
    assert_eq!(raw_events["status"], "built", "{stdout}");
    assert_eq!(raw_events["rows_read"], events, "{stdout}");
    assert_eq!(raw_events["rows_rejected"], unparsable, "{stdout}");
    assert_eq!(raw_events["rows_written"], events - unparsable, "{stdout}");
    assert!(
        stdout.contains("rejected ") && stdout.contains("events-2026-11-21-partial.csv.gz"),
        "{stdout}"
    );
    // Hive-style partitions by ingest date, and no partial files from the rejected delivery.
    let partitions: Vec<String> = std::fs::read_dir(dir.join("raw/events"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('_'))
        .collect();
    assert!(
        partitions
            .iter()
            .all(|name| name.starts_with("ingest_date=")),
        "{partitions:?}"
    );
    let avro_files = std::fs::read_dir(dir.join("raw/events").join(&partitions[0]))
        .unwrap()
        .count();
    assert_eq!(avro_files, 14, "one Avro file per accepted landing file");

    // The run report is kept in the warehouse's history.
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("_strata/runs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let report = std::fs::read_to_string(&runs[0]).unwrap();
    assert!(
        report.contains("\"rejected_files\"") && report.contains("partial.csv.gz"),
        "{report}"
    );

    // A second run finds no new landing files and writes nothing; the rejected file
    // is not read again until it is delivered anew.
    let again = strata(&["run", &example(), "--warehouse", wh, "--select", RAW_TABLES]);
    let stdout = crate::support::stdout(&again);
    assert!(again.status.success(), "{stdout}");
    let raw_events = table_report(&stdout, "raw.events");
    assert_eq!(raw_events["status"], "up_to_date", "{stdout}");
    assert_eq!(raw_events["rows_written"], 0, "{stdout}");
    assert!(!stdout.contains("partial.csv.gz"), "{stdout}");
    assert_eq!(
        table_report(&stdout, "raw.jobs")["status"],
        "up_to_date",
        "{stdout}"
    );
    assert_eq!(fastavro_rows(&dir.join("raw/events")), events - unparsable);
}

#[test]
fn full_refresh_replaces_the_raw_table_instead_of_duplicating_it() {
    let dir = warehouse("run-refresh");
    let wh = dir.to_str().unwrap();
    for extra in [&[][..], &["--full-refresh"][..]] {
        let mut args = vec!["run", &example(), "--warehouse", wh, "--select", "raw.jobs"]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let output = strata(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(output.status.success(), "{}", stdout(&output));
    }
    let log = std::fs::read_dir(dir.join("raw/jobs/_strata_log"))
        .unwrap()
        .count();
    assert_eq!(log, 2, "two commits");
    let last = std::fs::read_to_string(dir.join("raw/jobs/_strata_log/00000000000000000001.json"))
        .unwrap();
    assert!(last.contains("\"reset\": true"), "{last}");
}

#[test]
fn run_errors_are_clear() {
    let dir = warehouse("run-errors");
    let wh = dir.to_str().unwrap();

    let output = strata(&[
        "run",
        &example(),
        "--warehouse",
        wh,
        "--select",
        "raw.event",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--select: unknown table raw.event — did you mean raw.events?"),
        "{}",
        stderr(&output)
    );

    let output = strata(&["run", "/nonexistent/pipeline", "--warehouse", wh]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("cannot read /nonexistent/pipeline"));

    // --select builds the named table and what it reads, nothing else.
    let output = strata(&[
        "run",
        &example(),
        "--warehouse",
        wh,
        "--select",
        "enriched.job_events_daily",
    ]);
    let stdout = stdout(&output);
    assert!(output.status.success(), "{stdout}\n{}", stderr(&output));
    for table in ["raw.events", "enriched.events", "enriched.job_events_daily"] {
        assert_eq!(table_report(&stdout, table)["status"], "built", "{stdout}");
    }
    assert!(
        !stdout.contains("raw.jobs") && !stdout.contains("ranked."),
        "{stdout}"
    );
}

/// An input that yields ten rows, then waits before its last five.
#[derive(Debug)]
struct SlowRows(datafusion::arrow::datatypes::SchemaRef);

impl datafusion::physical_plan::streaming::PartitionStream for SlowRows {
    fn schema(&self) -> &datafusion::arrow::datatypes::SchemaRef {
        &self.0
    }

    fn execute(
        &self,
        _: std::sync::Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::execution::SendableRecordBatchStream {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::record_batch::RecordBatch;
        let schema = std::sync::Arc::clone(&self.0);
        let batch = move |rows: i64| {
            RecordBatch::try_new(
                std::sync::Arc::clone(&schema),
                vec![std::sync::Arc::new(Int64Array::from_iter_values(0..rows))],
            )
            .map_err(Into::into)
        };
        let stream = futures::stream::unfold(0, move |step| {
            let batch = batch.clone();
            async move {
                match step {
                    0 => Some((batch(10), 1)),
                    1 => {
                        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
                        Some((batch(5), 2))
                    }
                    _ => None,
                }
            }
        });
        Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                std::sync::Arc::clone(&self.0),
                stream,
            ),
        )
    }
}

#[test]
fn an_embedded_build_reports_rows_read_while_it_runs() {
    use std::sync::{Arc, Mutex};

    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::streaming::StreamingTableExec;
    use strata_engine::Engine;
    use strata_engine::expectations::Checker;
    use strata_engine::write::{FileFormat, WriteFilesExec, WriteSpec};

    let dir = workdir("progress");
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let input = StreamingTableExec::try_new(
        Arc::clone(&schema),
        vec![Arc::new(SlowRows(Arc::clone(&schema)))],
        None,
        Vec::new(),
        false,
        None,
    )
    .unwrap();
    let spec = WriteSpec {
        format: FileFormat::Avro,
        table_dir: dir.display().to_string(),
        prefix: "part-progress".into(),
        partition_columns: Vec::new(),
        quarantine_dir: None,
    };
    let writer = Arc::new(WriteFilesExec::new(
        Arc::new(input),
        spec,
        Checker::from_rules(Vec::new(), &schema, "progress"),
    ));
    let heard = Mutex::new(Vec::new());
    let engine = Engine::Embedded;
    let written = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ctx = engine.session();
        let on_rows = |rows: u64| heard.lock().unwrap().push(rows);
        engine
            .write(Arc::clone(&writer), &ctx, "test:progress", &on_rows)
            .await
            .unwrap()
    });
    let heard = heard.into_inner().unwrap();
    // While the input waited, the writer had read its first ten rows and said so.
    assert!(heard.contains(&10), "progress heard: {heard:?}");
    assert!(heard.iter().all(|&rows| rows <= 15), "{heard:?}");
    assert_eq!(writer.rows_read(), 15);
    assert_eq!(written.rows_read, 15);
}
