//! What a writer answers: one row per file it wrote and one row of counts per
//! partition, in typed columns, and the summary the orchestrator commits from.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, MapBuilder, RecordBatch, StringArray, StringBuilder,
    UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};
use datafusion::error::{DataFusionError, Result};
use deltalake_core::kernel::Add;
use strata_storage::{StorageError, WrittenFile};

/// What one output row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// A data file of the table.
    Data,
    /// A data file of the quarantine table.
    Quarantine,
    /// No file: one partition's counts of rows read and dropped.
    Counts,
    /// No file: a landing file a scan read to its end, with its rows read and rejected.
    Scanned,
    /// A file of a raw table's rejected rows.
    Rejects,
}

impl Written {
    fn as_str(self) -> &'static str {
        match self {
            Written::Data => "data",
            Written::Quarantine => "quarantine",
            Written::Counts => "counts",
            Written::Scanned => "scanned",
            Written::Rejects => "rejects",
        }
    }

    fn parse(kind: &str) -> Result<Self> {
        match kind {
            "data" => Ok(Written::Data),
            "quarantine" => Ok(Written::Quarantine),
            "counts" => Ok(Written::Counts),
            "scanned" => Ok(Written::Scanned),
            "rejects" => Ok(Written::Rejects),
            other => Err(DataFusionError::Internal(format!(
                "unknown written row kind {other}"
            ))),
        }
    }
}

/// One file a partition wrote: an Avro file of the raw zone, or a Delta data file.
#[derive(Debug, Clone)]
pub enum DataFile {
    Avro(WrittenFile),
    Delta(Box<Add>),
}

impl DataFile {
    /// The path relative to the table's directory.
    pub fn path(&self) -> &str {
        match self {
            DataFile::Avro(file) => &file.path,
            DataFile::Delta(add) => &add.path,
        }
    }

    fn rows(&self) -> u64 {
        match self {
            DataFile::Avro(file) => file.rows,
            DataFile::Delta(add) => add_rows(add),
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            DataFile::Avro(file) => file.bytes,
            DataFile::Delta(add) => add.size.max(0) as u64,
        }
    }
}

/// One landing file as its scan counted it: rows read (good and bad) and rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    pub path: String,
    pub rows_read: u64,
    pub rows_rejected: u64,
}

/// What one partition did, before it becomes output rows.
#[derive(Debug, Default)]
pub(super) struct PartitionOutput {
    pub rows_read: u64,
    pub dropped: u64,
    pub data: Vec<DataFile>,
    pub quarantine: Vec<Add>,
    pub scanned: Vec<ScannedFile>,
    pub rejects: Vec<WrittenFile>,
}

static OUTPUT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let partition_values = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
        .finish()
        .data_type()
        .clone();
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("dropped", DataType::UInt64, false),
        Field::new("writer", DataType::Utf8, false),
        Field::new("modification_time", DataType::Int64, false),
        Field::new("partition_values", partition_values, false),
        Field::new("stats", DataType::Utf8, true),
    ]))
});

/// The schema of a writer's output.
pub(super) fn output_schema() -> SchemaRef {
    Arc::clone(&OUTPUT_SCHEMA)
}

impl PartitionOutput {
    /// The partition's rows: its counts, then one per file.
    pub(super) fn into_batch(self, writer: &str) -> Result<RecordBatch> {
        let mut kind = Vec::new();
        let mut path = Vec::new();
        let mut rows = Vec::new();
        let mut bytes = Vec::new();
        let mut dropped = Vec::new();
        let mut modified = Vec::new();
        let mut stats: Vec<Option<String>> = Vec::new();
        let mut partitions = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        // A row without a file names a landing file (`Scanned`) or nothing (`Counts`).
        let mut push =
            |what: Written, file: Option<&DataFile>, name: &str, lost: u64, read: u64| {
                kind.push(what.as_str());
                path.push(file.map_or(name.to_owned(), |file| file.path().to_owned()));
                rows.push(file.map_or(read, DataFile::rows));
                bytes.push(file.map_or(0, DataFile::bytes));
                dropped.push(lost);
                let add = match file {
                    Some(DataFile::Delta(add)) => Some(add),
                    _ => None,
                };
                modified.push(add.map_or(0, |add| add.modification_time));
                stats.push(add.and_then(|add| add.stats.clone()));
                let mut values: Vec<_> = add
                    .map(|add| add.partition_values.iter().collect())
                    .unwrap_or_default();
                values.sort();
                for (key, value) in values {
                    partitions.keys().append_value(key);
                    partitions.values().append_option(value.as_deref());
                }
                partitions.append(true)
            };
        push(Written::Counts, None, "", self.dropped, self.rows_read)?;
        for file in &self.data {
            push(Written::Data, Some(file), "", 0, 0)?;
        }
        for file in self.rejects {
            push(Written::Rejects, Some(&DataFile::Avro(file)), "", 0, 0)?;
        }
        for file in &self.scanned {
            push(
                Written::Scanned,
                None,
                &file.path,
                file.rows_rejected,
                file.rows_read,
            )?;
        }
        for add in self.quarantine {
            push(
                Written::Quarantine,
                Some(&DataFile::Delta(Box::new(add))),
                "",
                0,
                0,
            )?;
        }
        let count = kind.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(kind)),
            Arc::new(StringArray::from(path)),
            Arc::new(UInt64Array::from(rows)),
            Arc::new(UInt64Array::from(bytes)),
            Arc::new(UInt64Array::from(dropped)),
            Arc::new(StringArray::from(vec![writer; count])),
            Arc::new(Int64Array::from(modified)),
            Arc::new(partitions.finish()),
            Arc::new(StringArray::from(stats)),
        ];
        Ok(RecordBatch::try_new(output_schema(), columns)?)
    }
}

/// Everything the partitions of one build wrote, ready to commit.
#[derive(Debug, Default)]
pub struct WriteSummary {
    pub rows_read: u64,
    pub rows_dropped: u64,
    /// Data files of the table.
    pub data: Vec<DataFile>,
    /// Data files of the quarantine table.
    pub quarantine: Vec<Add>,
    /// The processes (`host:pid`) that wrote files, sorted.
    pub writers: Vec<String>,
    /// The landing files scans read to their end (a raw build's).
    pub scanned: Vec<ScannedFile>,
    /// Files of rejected rows, relative to the raw table's directory.
    pub rejects: Vec<WrittenFile>,
}

impl WriteSummary {
    /// Reads the writer's output rows of every partition.
    pub fn decode(batches: &[RecordBatch], format: super::FileFormat) -> Result<Self> {
        let mut summary = WriteSummary::default();
        for batch in batches {
            let text = |index: usize| batch.column(index).as_string::<i32>();
            let number = |index: usize| batch.column(index).as_primitive::<UInt64Type>();
            let (kind, path, writer, stats) = (text(0), text(1), text(5), text(8));
            let (rows, bytes, dropped) = (number(2), number(3), number(4));
            let modified = batch.column(6).as_primitive::<Int64Type>();
            let partitions = batch.column(7).as_map();
            for row in 0..batch.num_rows() {
                let kind = Written::parse(kind.value(row))?;
                match kind {
                    Written::Counts => {
                        summary.rows_read += rows.value(row);
                        summary.rows_dropped += dropped.value(row);
                        continue;
                    }
                    Written::Scanned => {
                        summary.scanned.push(ScannedFile {
                            path: path.value(row).to_owned(),
                            rows_read: rows.value(row),
                            rows_rejected: dropped.value(row),
                        });
                        continue;
                    }
                    _ => {}
                }
                summary.writers.push(writer.value(row).to_owned());
                let entries = partitions.value(row);
                let keys = entries.column(0).as_string::<i32>();
                let values = entries.column(1).as_string::<i32>();
                let partition_values: HashMap<String, Option<String>> = (0..entries.len())
                    .map(|entry| {
                        let value = values
                            .is_valid(entry)
                            .then(|| values.value(entry).to_owned());
                        (keys.value(entry).to_owned(), value)
                    })
                    .collect();
                let add = || Add {
                    path: path.value(row).to_owned(),
                    partition_values: partition_values.clone(),
                    size: bytes.value(row) as i64,
                    modification_time: modified.value(row),
                    data_change: true,
                    stats: stats.is_valid(row).then(|| stats.value(row).to_owned()),
                    ..Add::default()
                };
                let avro = || WrittenFile {
                    path: path.value(row).to_owned(),
                    rows: rows.value(row),
                    bytes: bytes.value(row),
                };
                match (kind, format) {
                    (Written::Quarantine, _) => summary.quarantine.push(add()),
                    (Written::Rejects, _) => summary.rejects.push(avro()),
                    (_, super::FileFormat::Delta) => {
                        summary.data.push(DataFile::Delta(Box::new(add())))
                    }
                    (_, super::FileFormat::Avro) => summary.data.push(DataFile::Avro(avro())),
                }
            }
        }
        summary.writers.sort();
        summary.writers.dedup();
        Ok(summary)
    }

    /// Adds the files and writers of another write (a raw build's next landing file).
    pub fn absorb(&mut self, other: WriteSummary) {
        self.rows_read += other.rows_read;
        self.rows_dropped += other.rows_dropped;
        self.data.extend(other.data);
        self.quarantine.extend(other.quarantine);
        self.scanned.extend(other.scanned);
        self.rejects.extend(other.rejects);
        self.writers.extend(other.writers);
        self.writers.sort();
        self.writers.dedup();
    }

    /// Rows in the table's new files.
    pub fn rows_written(&self) -> u64 {
        self.data.iter().map(DataFile::rows).sum()
    }

    /// Rows in the quarantine's new files.
    pub fn rows_quarantined(&self) -> u64 {
        self.quarantine.iter().map(add_rows).sum()
    }

    /// Bytes of the table's new files.
    pub fn bytes_written(&self) -> u64 {
        self.data.iter().map(DataFile::bytes).sum()
    }

    /// Fails if two files have one path: one overwrote the other, so committing them
    /// would lose rows.
    pub fn check_distinct(&self) -> std::result::Result<(), StorageError> {
        let mut seen = HashSet::new();
        let paths = self
            .data
            .iter()
            .map(DataFile::path)
            .chain(self.quarantine.iter().map(|add| add.path.as_str()))
            .chain(self.rejects.iter().map(|file| file.path.as_str()));
        for path in paths {
            if !seen.insert(path) {
                return Err(StorageError::DuplicateFile(path.to_owned()));
            }
        }
        Ok(())
    }

    /// The table's new Avro files (a raw build's).
    pub fn avro_files(&self) -> Vec<WrittenFile> {
        self.data
            .iter()
            .filter_map(|file| match file {
                DataFile::Avro(file) => Some(file.clone()),
                DataFile::Delta(_) => None,
            })
            .collect()
    }

    /// The table's new Delta data files.
    pub fn delta_adds(&self) -> Vec<Add> {
        self.data
            .iter()
            .filter_map(|file| match file {
                DataFile::Delta(add) => Some(add.as_ref().clone()),
                DataFile::Avro(_) => None,
            })
            .collect()
    }
}

/// The rows of a Delta data file, from the statistics its writer recorded.
fn add_rows(add: &Add) -> u64 {
    add.stats
        .as_deref()
        .and_then(|stats| serde_json::from_str::<serde_json::Value>(stats).ok())
        .and_then(|stats| stats.get("numRecords")?.as_u64())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::FileFormat;

    fn add(path: &str, day: Option<&str>) -> Add {
        Add {
            path: path.into(),
            partition_values: HashMap::from([("day".to_owned(), day.map(str::to_owned))]),
            size: 120,
            modification_time: 17,
            data_change: true,
            stats: Some(r#"{"numRecords":5}"#.into()),
            ..Add::default()
        }
    }

    #[test]
    fn delta_files_and_counts_survive_the_output_rows() {
        let first = PartitionOutput {
            rows_read: 9,
            dropped: 1,
            data: vec![DataFile::Delta(Box::new(add("day=1/a.parquet", Some("1"))))],
            quarantine: vec![add("q.parquet", None)],
            ..PartitionOutput::default()
        };
        let second = PartitionOutput {
            rows_read: 3,
            scanned: vec![ScannedFile {
                path: "/landing/a.csv".into(),
                rows_read: 5,
                rows_rejected: 2,
            }],
            rejects: vec![WrittenFile {
                path: "_rejects/r.avro".into(),
                rows: 2,
                bytes: 40,
            }],
            ..PartitionOutput::default()
        };
        let batches = [
            first.into_batch("h:1").unwrap(),
            second.into_batch("h:2").unwrap(),
        ];
        let summary = WriteSummary::decode(&batches, FileFormat::Delta).unwrap();
        assert_eq!((summary.rows_read, summary.rows_dropped), (12, 1));
        assert_eq!(
            summary.scanned,
            [ScannedFile {
                path: "/landing/a.csv".into(),
                rows_read: 5,
                rows_rejected: 2
            }]
        );
        assert_eq!(summary.rejects[0].path, "_rejects/r.avro");
        assert_eq!(summary.rejects[0].rows, 2);
        assert_eq!((summary.rows_written(), summary.rows_quarantined()), (5, 5));
        assert_eq!(
            summary.writers,
            ["h:1", "h:2"],
            "a partition that wrote no data file but rejects is a writer"
        );
        let adds = summary.delta_adds();
        assert_eq!(adds[0].path, "day=1/a.parquet");
        assert_eq!(adds[0].partition_values["day"].as_deref(), Some("1"));
        assert_eq!((adds[0].size, adds[0].modification_time), (120, 17));
        assert_eq!(summary.quarantine[0].partition_values["day"], None);
        summary.check_distinct().unwrap();
    }

    #[test]
    fn avro_files_keep_their_counts_and_a_repeated_path_is_refused() {
        let file = WrittenFile {
            path: "part-1.avro".into(),
            rows: 4,
            bytes: 64,
        };
        let output = || PartitionOutput {
            rows_read: 4,
            data: vec![DataFile::Avro(file.clone())],
            ..PartitionOutput::default()
        };
        let batches = [
            output().into_batch("h:1").unwrap(),
            output().into_batch("h:1").unwrap(),
        ];
        let summary = WriteSummary::decode(&batches, FileFormat::Avro).unwrap();
        assert_eq!(summary.avro_files(), [file.clone(), file]);
        assert_eq!(summary.bytes_written(), 128);
        assert!(matches!(
            summary.check_distinct(),
            Err(StorageError::DuplicateFile(path)) if path == "part-1.avro"
        ));
    }
}
