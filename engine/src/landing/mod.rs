//! Landing sources as Strata reads them: a source's definition read once (its format,
//! compression, columns and bad-row policy), its files found by the extensions they
//! are delivered with, and a table over some of them. CSV and NDJSON files, and the
//! JSON or CSV messages of a Kafka topic, are read row by row by [`LandingScanExec`];
//! Parquet, Avro and Arrow files by DataFusion.

mod avro_values;
mod kafka;
mod scan;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::parser::{CreateExternalTable, Statement as DFStatement};
use strata_decrypt::{Cipher, Decryption};
use strata_storage::landing::{
    AfterIngest, BadRowPolicy, Compression, CsvLayout, FileKind, Listing, RowFormat, after_ingest,
    file_suffixes, list_files, policy,
};
use strata_storage::store::is_store_option;
use strata_storage::{SourceFile, StoreOptions, StoreUrl};

pub use kafka::{KafkaRead, STORED_AS as KAFKA};
pub use scan::{
    FilePart, Input, LandingScanExec, LandingTable, ReadSpec, RejectsTarget, ScanOutcome,
};

/// How many rows of each file undeclared columns are inferred from, unless the source
/// says (`'format.schema_infer_max_rec'`). DataFusion's own 1,000 is too few for real
/// exports: a column that is 0 for the first thousand rows and a decimal after is
/// inferred as an integer, and every later row would be set aside.
pub const INFER_MAX_RECORDS: usize = 100_000;
const INFER_MAX_RECORDS_OPTION: &str = "format.schema_infer_max_rec";

/// A landing source's definition, read for Strata's readers.
#[derive(Debug, Clone)]
pub struct LandingSource {
    pub name: String,
    pub kind: FileKind,
    pub compression: Compression,
    pub locations: Vec<String>,
    /// The declared columns; `None` when the files' own are used.
    declared: Option<SchemaRef>,
    /// The format as DataFusion reads it, for inferring columns and for Parquet, Avro
    /// and Arrow files.
    format: Arc<dyn FileFormat>,
    /// How CSV and NDJSON files are read row by row.
    row_format: Option<RowFormat>,
    pub policy: BadRowPolicy,
    /// What becomes of a file once a raw table committed its rows.
    pub after_ingest: AfterIngest,
    /// The source's own store settings (`'aws.region'`…), on top of the environment's.
    pub store: StoreOptions,
    /// The topic of a Kafka source; `None` for a source of files.
    pub kafka: Option<KafkaRead>,
    /// Where the keys of encrypted files are (`'decrypt.key_file'`…); `None` when the
    /// source reads files in clear only.
    pub decrypt: Option<Decryption>,
}

impl LandingSource {
    /// Reads a `CREATE EXTERNAL TABLE` for Strata: its `bad_rows` and store options
    /// (`aws.*`, `gcp.*`, `azure.*`) here, its `format.*` options as DataFusion reads
    /// them (refusing unknown ones). A store configured by options is registered on the
    /// session, so DataFusion's readers of Parquet, Avro and Arrow files use it too.
    pub async fn from_definition(
        definition: &CreateExternalTable,
        state: &SessionState,
    ) -> Result<Self> {
        let mut definition = definition.clone();
        let kafka = KafkaRead::take_from(&mut definition)?;
        let (stores, rest): (Vec<_>, Vec<_>) = definition
            .options
            .into_iter()
            .partition(|(key, _)| is_store_option(&key.to_ascii_lowercase()));
        let (ours, theirs): (Vec<_>, Vec<_>) = rest.into_iter().partition(|(key, _)| {
            let key = key.to_ascii_lowercase();
            policy::OPTION_NAMES
                .iter()
                .chain(&after_ingest::OPTION_NAMES)
                .chain(&strata_decrypt::OPTION_NAMES)
                .any(|name| *name == key)
        });
        definition.options = theirs;
        if let (Some(_), Some((key, _))) = (&kafka, stores.first()) {
            return Err(DataFusionError::Plan(format!(
                "{}: option '{key}' is for object stores; a Kafka source reads no files",
                definition.name
            )));
        }
        let store = StoreOptions::from_source_options(
            stores
                .iter()
                .map(|(key, value)| (key.clone(), option_text(value))),
        );
        let values: Vec<(String, String)> = ours
            .iter()
            .map(|(key, value)| (key.clone(), option_text(value)))
            .collect();
        let policy_options = values
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()));
        let policy = match kafka {
            Some(_) => BadRowPolicy::for_streams(policy_options),
            None => BadRowPolicy::from_options(policy_options),
        }
        .map_err(DataFusionError::Plan)?;
        let after_ingest = AfterIngest::from_options(
            values
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )
        .map_err(DataFusionError::Plan)?;
        after_ingest
            .check(&definition.locations)
            .map_err(DataFusionError::Plan)?;
        let decrypt = Decryption::from_options(
            values
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )
        .map_err(|error| DataFusionError::Plan(format!("{}: {error}", definition.name)))?;
        let kind = FileKind::parse(&definition.file_type).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "STORED AS {} is not a landing format; Strata reads CSV, JSON (newline-delimited), PARQUET, AVRO and ARROW",
                definition.file_type
            ))
        })?;
        definition.file_type = match kind {
            FileKind::Json => "JSON".to_owned(),
            _ => definition.file_type.to_ascii_uppercase(),
        };
        if matches!(kind, FileKind::Csv | FileKind::Json)
            && !definition
                .options
                .iter()
                .any(|(key, _)| key.eq_ignore_ascii_case(INFER_MAX_RECORDS_OPTION))
        {
            definition.options.push((
                INFER_MAX_RECORDS_OPTION.to_owned(),
                datafusion::sql::sqlparser::ast::Value::SingleQuotedString(
                    INFER_MAX_RECORDS.to_string(),
                ),
            ));
        }
        let name = definition.name.to_string();
        let plan = state
            .statement_to_plan(DFStatement::CreateExternalTable(definition))
            .await?;
        let LogicalPlan::Ddl(DdlStatement::CreateExternalTable(command)) = plan else {
            return Err(DataFusionError::Internal(format!(
                "{name} did not plan as an external table"
            )));
        };
        let format = state
            .get_file_format_factory(&command.file_type)
            .ok_or_else(|| {
                DataFusionError::Plan(format!("no reader for {} files", command.file_type))
            })?
            .create(state, &command.options)?;
        let (row_format, compression) = match kind {
            FileKind::Csv => {
                let csv = format
                    .downcast_ref::<CsvFormat>()
                    .ok_or_else(|| DataFusionError::Internal("a CSV source without CSV".into()))?
                    .options();
                let layout = csv_layout(csv, state)?;
                (Some(RowFormat::Csv(layout)), csv.compression.into())
            }
            FileKind::Json => {
                let json = format
                    .downcast_ref::<JsonFormat>()
                    .ok_or_else(|| DataFusionError::Internal("a JSON source without JSON".into()))?
                    .options();
                (Some(RowFormat::Ndjson), json.compression.into())
            }
            _ => (None, Compression::Uncompressed),
        };
        let declared = (!command.schema.fields().is_empty())
            .then(|| Arc::new(command.schema.as_arrow().clone()));
        if decrypt.is_some() {
            check_decryptable(&name, kind, kafka.is_some(), declared.is_some())?;
        }
        if let Some(kafka) = &kafka {
            kafka.check_columns(declared.as_ref())?;
        }
        if !store.is_empty() {
            for location in &command.locations {
                let location = StoreUrl::parse(location).map_err(DataFusionError::from)?;
                let opened = location.open(&store).map_err(DataFusionError::from)?;
                state
                    .runtime_env()
                    .register_object_store(location.root(), opened);
            }
        }
        Ok(Self {
            name,
            kind,
            compression,
            locations: command.locations,
            declared,
            format,
            row_format,
            policy,
            after_ingest,
            store,
            kafka,
            decrypt,
        })
    }

    /// The ends of the file names this source reads (`.csv.gz`, say); with keys, also
    /// those of the same files encrypted (`.csv.gz.gpg`, `.csv.gz.age`).
    pub fn suffixes(&self) -> Vec<String> {
        let clear = file_suffixes(self.kind, self.compression);
        if self.decrypt.is_none() {
            return clear;
        }
        let encrypted = clear.iter().flat_map(|suffix| {
            Cipher::SUFFIXES
                .iter()
                .map(move |cipher| format!("{suffix}{cipher}"))
        });
        encrypted.chain(clear.iter().cloned()).collect()
    }

    /// The files under every location, sorted by path; none for a Kafka source.
    pub async fn list(&self) -> strata_storage::Result<Listing> {
        if self.kafka.is_some() {
            return Ok(Listing::default());
        }
        let suffixes = self.suffixes();
        let mut listing = Listing::default();
        for location in &self.locations {
            let mut found = list_files(location, &self.store, &suffixes).await?;
            listing.files.append(&mut found.files);
            listing.ignored.append(&mut found.ignored);
        }
        listing.files.sort_by(|a, b| a.path.cmp(&b.path));
        listing.files.dedup();
        Ok(listing)
    }

    /// What has arrived at the source, one line each, for a trigger on new data to
    /// compare with what it saw last: each file as `path size modified`, or each
    /// partition of a Kafka topic as `partition newest-offset`.
    pub async fn arrivals(&self) -> crate::error::Result<Vec<String>> {
        let Some(kafka) = &self.kafka else {
            return Ok(self
                .list()
                .await?
                .files
                .into_iter()
                .map(|file| format!("{} {} {}", file.path, file.size, file.modified_ms))
                .collect());
        };
        let kafka = kafka.clone();
        let marks = tokio::task::spawn_blocking(move || {
            strata_kafka::KafkaClient::new(&kafka.location, &kafka.options)?
                .watermarks()
                .map(|marks| (kafka, marks))
        })
        .await
        .map_err(|error| DataFusionError::External(Box::new(error)))?;
        let (kafka, marks) = marks?;
        Ok(marks
            .iter()
            .map(|mark| {
                format!(
                    "{} {}",
                    kafka.location.partition_name(mark.partition),
                    mark.high
                )
            })
            .collect())
    }

    /// The columns: declared ones, or those inferred from `files`.
    pub async fn schema(&self, files: &[SourceFile], session: &dyn Session) -> Result<SchemaRef> {
        if let Some(declared) = &self.declared {
            return Ok(Arc::clone(declared));
        }
        if files.is_empty() {
            return Err(DataFusionError::Plan(format!(
                "{} declares no columns and its locations hold no {} files to read them from; declare the columns",
                self.name,
                self.suffixes().join(", ")
            )));
        }
        let config = ListingTableConfig::new_with_multi_paths(urls(files)?)
            .with_listing_options(self.listing_options())
            .infer_schema(session)
            .await?;
        let inferred = config.file_schema.ok_or_else(|| {
            DataFusionError::Internal(format!("no schema inferred for {}", self.name))
        })?;
        Ok(match self.row_format {
            Some(_) => text_for_empty_columns(&inferred),
            None => inferred,
        })
    }

    /// A table over `files` with `schema`; a row-by-row source writes its bad rows to
    /// `rejects`, and without one fails on the first. With `split_files`, a large
    /// uncompressed file is read in byte ranges, one partition each; only embedded:
    /// Ballista gives each task only its own partitions of the scans it knows, so a
    /// task of Strata's scan would read them all.
    pub fn table(
        &self,
        files: Vec<SourceFile>,
        schema: SchemaRef,
        rejects: Option<RejectsTarget>,
        split_files: bool,
    ) -> Result<Arc<dyn TableProvider>> {
        match self.read_spec() {
            Some(read) => Ok(Arc::new(LandingTable::new(
                Input::Files { files, split_files },
                schema,
                read,
                rejects,
            ))),
            None => {
                let config = ListingTableConfig::new_with_multi_paths(urls(&files)?)
                    .with_listing_options(self.listing_options())
                    .with_schema(schema);
                Ok(Arc::new(ListingTable::try_new(config)?))
            }
        }
    }

    /// A Kafka source's `ranges` as a table with `schema`, its bad messages written to
    /// `rejects`: one partition of the scan per range.
    pub fn kafka_table(
        &self,
        ranges: &[strata_kafka::PartitionRange],
        schema: SchemaRef,
        rejects: Option<RejectsTarget>,
    ) -> Result<Arc<dyn TableProvider>> {
        let (Some(kafka), Some(read)) = (&self.kafka, self.read_spec()) else {
            return Err(DataFusionError::Internal(format!(
                "{} is not a Kafka source",
                self.name
            )));
        };
        let parts = ranges
            .iter()
            .map(|range| FilePart {
                path: kafka.location.partition_name(range.partition),
                range: Some((range.start as u64, range.end as u64)),
            })
            .collect();
        Ok(Arc::new(LandingTable::new(
            Input::Parts(parts),
            schema,
            read,
            rejects,
        )))
    }

    /// How the row-by-row scan reads this source; `None` when DataFusion reads it.
    fn read_spec(&self) -> Option<ReadSpec> {
        self.row_format.as_ref().map(|format| ReadSpec {
            format: format.clone(),
            compression: self.compression,
            policy: self.policy,
            store: self.store.clone(),
            kafka: self.kafka.clone(),
            decrypt: self.decrypt.clone(),
        })
    }

    fn listing_options(&self) -> ListingOptions {
        // The files were chosen by name already; every one given is read.
        ListingOptions::new(Arc::clone(&self.format)).with_file_extension("")
    }
}

/// Refuses decryption where Strata cannot do it: files DataFusion reads itself
/// (Parquet, Avro and Arrow need to seek), topics, and columns to infer from
/// ciphertext.
fn check_decryptable(name: &str, kind: FileKind, kafka: bool, declared: bool) -> Result<()> {
    let why = if kafka {
        "a Kafka source reads no files to decrypt"
    } else if !matches!(kind, FileKind::Csv | FileKind::Json) {
        "Strata decrypts CSV and JSON files as it reads them; Parquet, Avro and Arrow files are read by seeking, so deliver them in clear or as CSV or JSON"
    } else if !declared {
        "declare the columns of an encrypted source: they are not inferred from encrypted files"
    } else {
        return Ok(());
    };
    Err(DataFusionError::Plan(format!(
        "{name}: 'decrypt.*' options: {why}"
    )))
}

/// The inferred columns, with every column no row had a value in (inferred as `Null`,
/// which no text converts to) read as nullable text, as DuckDB and Spark read it.
fn text_for_empty_columns(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<FieldRef> = schema.fields().iter().map(text_for_null).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The field with each `Null` type in it, at any depth, as nullable text.
fn text_for_null(field: &FieldRef) -> FieldRef {
    let data_type = match field.data_type() {
        DataType::Null => DataType::Utf8,
        DataType::List(item) => DataType::List(text_for_null(item)),
        DataType::LargeList(item) => DataType::LargeList(text_for_null(item)),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(text_for_null).collect()),
        _ => return Arc::clone(field),
    };
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(data_type)
            .with_nullable(true),
    )
}

fn urls(files: &[SourceFile]) -> Result<Vec<ListingTableUrl>> {
    files
        .iter()
        .map(|file| ListingTableUrl::parse(&file.path))
        .collect()
}

/// An option's value as text, without the quotes SQL wrote around it.
fn option_text(value: &datafusion::sql::sqlparser::ast::Value) -> String {
    use datafusion::sql::sqlparser::ast::Value;
    match value {
        Value::SingleQuotedString(text) | Value::DoubleQuotedString(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The CSV layout Strata's reader follows; options it would not follow are refused
/// rather than ignored.
fn csv_layout(options: &datafusion::config::CsvOptions, state: &SessionState) -> Result<CsvLayout> {
    let unsupported = [
        ("format.terminator", options.terminator.is_some()),
        (
            "format.truncated_rows",
            options.truncated_rows == Some(true),
        ),
        ("format.date_format", options.date_format.is_some()),
        ("format.datetime_format", options.datetime_format.is_some()),
        (
            "format.timestamp_format",
            options.timestamp_format.is_some(),
        ),
        (
            "format.timestamp_tz_format",
            options.timestamp_tz_format.is_some(),
        ),
        ("format.time_format", options.time_format.is_some()),
    ];
    let refused: Vec<&str> = unsupported
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
    if !refused.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "Strata's CSV reader does not support {}; values are read as ISO 8601 and rows end at line breaks",
            refused.join(", ")
        )));
    }
    let catalog = &state.config().options().catalog;
    Ok(CsvLayout {
        has_header: options.has_header.unwrap_or(catalog.has_header),
        delimiter: options.delimiter,
        quote: options.quote,
        escape: options.escape,
        comment: options.comment,
        null_regex: options.null_regex.clone(),
        newlines_in_values: options
            .newlines_in_values
            .unwrap_or(catalog.newlines_in_values),
    })
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use datafusion::sql::parser::DFParser;
    use strata_storage::landing::{Limit, OnBadRow};

    use super::*;

    async fn source(sql: &str) -> Result<LandingSource> {
        let mut statements = DFParser::parse_sql(sql)?;
        let Some(DFStatement::CreateExternalTable(definition)) = statements.pop_front() else {
            panic!("not an external table: {sql}")
        };
        LandingSource::from_definition(&definition, &SessionContext::new().state()).await
    }

    #[tokio::test]
    async fn a_definition_is_read_once_with_its_policy_format_and_suffixes() {
        let json = source(
            "CREATE EXTERNAL TABLE landing.e (id BIGINT) STORED AS NDJSON LOCATION '/l/e/' \
             OPTIONS ('format.compression' 'gzip', 'bad_rows' 'fail_file', 'bad_rows.limit' '3')",
        )
        .await
        .unwrap();
        assert_eq!(json.kind, FileKind::Json);
        assert_eq!(json.compression, Compression::Gzip);
        assert_eq!(json.policy.on_bad_row, OnBadRow::FailFile);
        assert_eq!(json.policy.limit, Limit::Rows(3));
        assert_eq!(json.suffixes(), [".json.gz", ".ndjson.gz", ".jsonl.gz"]);
        assert_eq!(json.row_format, Some(RowFormat::Ndjson));

        let csv = source(
            "CREATE EXTERNAL TABLE landing.c (id BIGINT) STORED AS CSV LOCATION '/l/c/' \
             OPTIONS ('format.delimiter' ';', 'format.has_header' 'false')",
        )
        .await
        .unwrap();
        let Some(RowFormat::Csv(layout)) = csv.row_format else {
            panic!("CSV is read row by row")
        };
        assert_eq!((layout.delimiter, layout.has_header), (b';', false));
    }

    #[tokio::test]
    async fn a_column_empty_in_every_row_is_inferred_as_nullable_text() {
        let dir = std::env::temp_dir().join(format!("strata-empty-column-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("a.csv");
        std::fs::write(&csv, "a,b,c\n1,,x\n2,,y\n").unwrap();
        let json = dir.join("a.json");
        std::fs::write(&json, "{\"a\":1,\"b\":null,\"c\":{\"d\":null}}\n").unwrap();
        for (kind, options, file) in [
            ("CSV", "OPTIONS ('format.has_header' 'true')", &csv),
            ("JSON", "", &json),
        ] {
            let source = source(&format!(
                "CREATE EXTERNAL TABLE landing.t STORED AS {kind} LOCATION '{}' {options}",
                dir.display()
            ))
            .await
            .unwrap();
            let files = [SourceFile {
                path: file.display().to_string(),
                size: std::fs::metadata(file).unwrap().len(),
                modified_ms: 0,
                etag: None,
            }];
            let schema = source
                .schema(&files, &SessionContext::new().state())
                .await
                .unwrap();
            let b = schema.field_with_name("b").unwrap();
            assert_eq!(
                (b.data_type(), b.is_nullable()),
                (&DataType::Utf8, true),
                "{kind}"
            );
            if kind == "JSON" {
                let DataType::Struct(inner) = schema.field_with_name("c").unwrap().data_type()
                else {
                    panic!("{schema:?}")
                };
                assert_eq!(inner[0].data_type(), &DataType::Utf8);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn unknown_formats_and_options_are_errors_that_say_so() {
        let xml = source("CREATE EXTERNAL TABLE landing.x STORED AS XML LOCATION '/l/x/'")
            .await
            .unwrap_err();
        assert!(
            xml.to_string()
                .contains("STORED AS XML is not a landing format"),
            "{xml}"
        );
        let typo = source(
            "CREATE EXTERNAL TABLE landing.c (id BIGINT) STORED AS CSV LOCATION '/l/c/' \
             OPTIONS ('format.delimeter' ';')",
        )
        .await
        .unwrap_err();
        assert!(typo.to_string().contains("delimeter"), "{typo}");
        let policy = source(
            "CREATE EXTERNAL TABLE landing.c (id BIGINT) STORED AS CSV LOCATION '/l/c/' \
             OPTIONS ('bad_rows' 'ignore')",
        )
        .await
        .unwrap_err();
        assert!(policy.to_string().contains("'fail_run'"), "{policy}");
    }
}
