//! Column lineage of a compiled pipeline's tables: the query's lineage, plus what the
//! table's write mode and expectations add (a merge keeps one row per key, SCD2 adds
//! its history columns, a dropped or quarantined row is filtered out).

use std::collections::BTreeMap;

use strata_engine::Compiled;
use strata_language::rules::SCD2_COLUMNS;
use strata_language::{OnViolation, Statement, TableDef, WriteMode};

use crate::error::Result;
use crate::plan::{ColumnLineage, Dataset, Direct, Indirect, Source, lineage};

/// The lineage of one table of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLineage {
    /// `layer.name`.
    pub table: String,
    /// Every stored column, in the table's order.
    pub columns: Vec<(String, ColumnLineage)>,
    /// Sources that decide the table's rows, and so every column.
    pub dataset: Dataset,
}

impl TableLineage {
    /// The tables it reads.
    pub fn inputs(&self) -> Vec<String> {
        let mut tables: Vec<String> = self
            .columns
            .iter()
            .flat_map(|(_, column)| {
                column
                    .direct
                    .keys()
                    .chain(column.indirect.keys())
                    .map(|source| source.table.clone())
            })
            .chain(self.dataset.keys().map(|source| source.table.clone()))
            .collect();
        tables.sort();
        tables.dedup();
        tables
    }

    /// As JSON: `{"columns": {col: {"direct": {src: subtype}, "indirect": {src: [subtype]}}},
    /// "dataset": {src: [subtype]}}`, sources written `layer.table.column`.
    pub fn to_json(&self) -> serde_json::Value {
        let indirect = |sources: &BTreeMap<Source, std::collections::BTreeSet<Indirect>>| {
            sources
                .iter()
                .map(|(source, kinds)| {
                    let kinds: Vec<&str> = kinds.iter().map(|kind| kind.name()).collect();
                    (source.to_string(), serde_json::json!(kinds))
                })
                .collect::<serde_json::Map<_, _>>()
        };
        let columns: serde_json::Map<_, _> = self
            .columns
            .iter()
            .map(|(name, column)| {
                let direct: serde_json::Map<_, _> = column
                    .direct
                    .iter()
                    .map(|(source, kind)| (source.to_string(), serde_json::json!(kind.name())))
                    .collect();
                (
                    name.clone(),
                    serde_json::json!({ "direct": direct, "indirect": indirect(&column.indirect) }),
                )
            })
            .collect();
        serde_json::json!({ "columns": columns, "dataset": indirect(&self.dataset) })
    }

    pub fn column(&self, name: &str) -> Option<&ColumnLineage> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, lineage)| lineage)
    }
}

/// The lineage of every table the pipeline builds (sources, which read files, have none).
pub fn pipeline(compiled: &Compiled) -> Result<Vec<TableLineage>> {
    let mut tables = Vec::new();
    for planned in &compiled.planned {
        let Statement::Table(definition) = &compiled.pipeline.statements[planned.node] else {
            continue;
        };
        let query = lineage(&planned.plan)?;
        let output = planned.plan.schema();
        let by_name: BTreeMap<&str, &ColumnLineage> = output
            .fields()
            .iter()
            .map(|field| field.name().as_str())
            .zip(&query.columns)
            .collect();
        let mut dataset = query.dataset.clone();
        write_mode(definition, &by_name, &mut dataset);
        expectations(compiled, definition, planned, &by_name, &mut dataset)?;
        let columns = planned
            .schema
            .fields()
            .iter()
            .map(|field| {
                let name = field.name();
                let column = match by_name.get(name.as_str()) {
                    Some(column) => (*column).clone(),
                    None => history_column(definition, name, &by_name),
                };
                (name.clone(), column)
            })
            .collect();
        tables.push(TableLineage {
            table: definition.name.to_string(),
            columns,
            dataset,
        });
    }
    Ok(tables)
}

/// Every source of the named output columns, as `kind` of the dataset.
fn add_columns(
    names: &[String],
    kind: Indirect,
    by_name: &BTreeMap<&str, &ColumnLineage>,
    dataset: &mut Dataset,
) {
    for name in names {
        if let Some(column) = by_name.get(name.as_str()) {
            for source in column.direct.keys().chain(column.indirect.keys()) {
                dataset.entry(source.clone()).or_default().insert(kind);
            }
        }
    }
}

/// A merge or SCD2 keeps one current row per key, the newest by the sequence column.
fn write_mode(table: &TableDef, by_name: &BTreeMap<&str, &ColumnLineage>, dataset: &mut Dataset) {
    let (key, sequence_by) = match &table.mode {
        WriteMode::Merge {
            key, sequence_by, ..
        } => (key, sequence_by.clone()),
        WriteMode::Scd2 { key, sequence_by } => (key, Some(sequence_by.clone())),
        WriteMode::Replace | WriteMode::Append => return,
    };
    add_columns(key, Indirect::GroupBy, by_name, dataset);
    if let Some(sequence_by) = sequence_by {
        add_columns(&[sequence_by], Indirect::Sort, by_name, dataset);
    }
}

/// SCD2's history columns: `valid_from` is the row's sequence value; `valid_to` and
/// `is_current` come from the next row of its key.
fn history_column(
    table: &TableDef,
    name: &str,
    by_name: &BTreeMap<&str, &ColumnLineage>,
) -> ColumnLineage {
    let WriteMode::Scd2 { key, sequence_by } = &table.mode else {
        return ColumnLineage::default();
    };
    let mut column = ColumnLineage::default();
    if let Some(sequence) = by_name.get(sequence_by.as_str()) {
        let direct = if name == SCD2_COLUMNS[0] {
            Direct::Identity
        } else {
            Direct::Transformation
        };
        for (source, was) in &sequence.direct {
            column.direct.insert(source.clone(), direct.max(*was));
        }
    }
    if name != SCD2_COLUMNS[0] {
        for key in key {
            if let Some(key) = by_name.get(key.as_str()) {
                for source in key.direct.keys() {
                    column
                        .indirect
                        .entry(source.clone())
                        .or_default()
                        .insert(Indirect::Window);
                }
            }
        }
    }
    column
}

/// Rows an expectation drops or quarantines are filtered out of the table.
fn expectations(
    compiled: &Compiled,
    table: &TableDef,
    planned: &strata_engine::compile::PlannedTable,
    by_name: &BTreeMap<&str, &ColumnLineage>,
    dataset: &mut Dataset,
) -> Result<()> {
    let state = compiled.ctx.state();
    for expectation in &table.expectations {
        if expectation.on_violation == OnViolation::Fail {
            continue;
        }
        let predicate =
            state.create_logical_expr(&expectation.predicate.to_string(), planned.plan.schema())?;
        let names: Vec<String> = predicate
            .column_refs()
            .into_iter()
            .map(|column| column.name.clone())
            .collect();
        add_columns(&names, Indirect::Filter, by_name, dataset);
    }
    Ok(())
}

/// Each table's stored columns with their Arrow types, for OpenLineage's schema facet.
pub fn schemas(compiled: &Compiled) -> BTreeMap<String, Vec<(String, String)>> {
    compiled
        .planned
        .iter()
        .filter_map(
            |planned| match &compiled.pipeline.statements[planned.node] {
                Statement::Table(definition) => Some((
                    definition.name.to_string(),
                    planned
                        .schema
                        .fields()
                        .iter()
                        .map(|field| (field.name().clone(), field.data_type().to_string()))
                        .collect(),
                )),
                Statement::Source(_) => None,
            },
        )
        .collect()
}
