//! Where a subject's data is, from column lineage: the landing columns named as the
//! subject's, every column that carries their values on (as they are or cast, of the
//! same type), the tables that hold such a column, and the tables whose rows are
//! computed from those tables' rows without holding the subject (aggregates, rankings).

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::datatypes::DataType;
use serde::Serialize;
use strata_engine::Compiled;
use strata_language::{Format, Statement, TableName, WriteMode, did_you_mean};
use strata_lineage::{Direct, Source, TableLineage};

use crate::error::{ErasureError, Result};

/// One subject: the rows whose `column` (as the landing tables name it) is `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    pub column: String,
    pub value: String,
}

impl std::str::FromStr for Subject {
    type Err = ErasureError;

    /// `column=value`; the value may hold `=` and is taken as written.
    fn from_str(text: &str) -> Result<Self> {
        match text.split_once('=') {
            Some((column, value)) if !column.trim().is_empty() && !value.is_empty() => Ok(Self {
                column: column.trim().to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(ErasureError::InvalidSubject(text.to_owned())),
        }
    }
}

/// A table that holds the subject's rows, found by the value in `columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub table: TableName,
    pub columns: Vec<String>,
}

/// What an erasure does, before it does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasurePlan {
    pub subject: Subject,
    /// Landing tables with the subject's column, whose files are left as delivered.
    pub landing: Vec<TableName>,
    /// Tables whose rows holding the subject are removed, in build order.
    pub holding: Vec<Holding>,
    /// Tables computed from a holding table's rows, recomputed without them.
    pub recomputed: Vec<TableName>,
    /// Tables computed from a holding table's rows that no run recomputes, with why.
    pub kept: Vec<(TableName, &'static str)>,
}

impl ErasurePlan {
    /// Traces the subject through the compiled pipeline's lineage.
    pub fn new(compiled: &Compiled, lineage: &[TableLineage], subject: Subject) -> Result<Self> {
        let pipeline = &compiled.pipeline;
        // Each column known to carry the subject, with its type.
        let mut carriers: BTreeMap<Source, DataType> = BTreeMap::new();
        let mut landing = Vec::new();
        let mut landing_columns = BTreeSet::new();
        for planned in &compiled.planned {
            let Statement::Source(source) = &pipeline.statements[planned.node] else {
                continue;
            };
            for field in planned.schema.fields() {
                landing_columns.insert(field.name().clone());
                if field.name().eq_ignore_ascii_case(&subject.column) {
                    carriers.insert(
                        Source {
                            table: source.name.to_string(),
                            column: field.name().clone(),
                        },
                        field.data_type().clone(),
                    );
                    landing.push(source.name.clone());
                }
            }
        }
        if landing.is_empty() {
            let hint = did_you_mean(&subject.column, landing_columns.iter().map(String::as_str))
                .map(|candidate| format!(" — did you mean {candidate}?"))
                .unwrap_or_default();
            return Err(ErasureError::UnknownColumn {
                column: subject.column,
                hint,
            });
        }
        let by_name: BTreeMap<&str, &TableLineage> = lineage
            .iter()
            .map(|table| (table.table.as_str(), table))
            .collect();
        let mut holding = Vec::new();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut recomputed = Vec::new();
        let mut kept = Vec::new();
        for node in compiled.graph.order() {
            let Statement::Table(definition) = &pipeline.statements[node] else {
                continue;
            };
            let name = definition.name.to_string();
            let (Some(table), Some(planned)) = (by_name.get(name.as_str()), compiled.planned(node))
            else {
                continue;
            };
            // Carried columns join the carriers once this table's are all known: a
            // column carries what its inputs carry, never a sibling's value.
            let mut carried = Vec::new();
            for (column, column_lineage) in &table.columns {
                let Ok(field) = planned.schema.field_with_name(column) else {
                    continue;
                };
                let data_type = field.data_type();
                if column_lineage.direct.iter().any(|(source, how)| {
                    *how != Direct::Aggregation && carriers.get(source) == Some(data_type)
                }) {
                    carried.push((column.clone(), data_type.clone()));
                }
            }
            let mut columns = Vec::with_capacity(carried.len());
            for (column, data_type) in carried {
                let source = Source {
                    table: name.clone(),
                    column: column.clone(),
                };
                carriers.insert(source, data_type);
                columns.push(column);
            }
            let holds = !columns.is_empty();
            if holds {
                holding.push(Holding {
                    table: definition.name.clone(),
                    columns,
                });
            } else if !table.inputs().iter().any(|input| touched.contains(input)) {
                continue;
            }
            touched.insert(name);
            if definition.name.layer.format() == Some(Format::Avro) {
                continue;
            }
            // A holding table loses the subject's rows whatever; one that ranks or
            // aggregates is recomputed too, so its other rows are as if never there.
            match why_kept(definition) {
                None => recomputed.push(definition.name.clone()),
                Some(why) if !holds => kept.push((definition.name.clone(), why)),
                Some(_) => {}
            }
        }
        Ok(Self {
            subject,
            landing,
            holding,
            recomputed,
            kept,
        })
    }
}

/// Why a run cannot recompute a table from its inputs as they now are, if it cannot.
fn why_kept(table: &strata_language::TableDef) -> Option<&'static str> {
    if table.reads.iter().any(|read| read.stream && !read.changes) {
        return Some("it reads a STREAM: rows it added are never recomputed");
    }
    match &table.mode {
        WriteMode::Append => Some("it appends: rows it added are never recomputed"),
        WriteMode::Replace
        | WriteMode::Merge {
            sequence_by: None, ..
        } => None,
        WriteMode::Merge { .. } | WriteMode::Scd2 { .. } => {
            Some("it merges by key: a key no input holds any more is not removed")
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_engine::{Engine, compile};
    use strata_language::Sources;
    use strata_storage::Warehouse;

    use super::*;

    const PIPELINE: &str = "
CREATE EXTERNAL TABLE landing.people (person_id VARCHAR, city VARCHAR, score INT)
  STORED AS CSV LOCATION 'landing/people/' OPTIONS ('format.has_header' 'true');
CREATE EXTERNAL TABLE landing.cities (city VARCHAR, country VARCHAR)
  STORED AS CSV LOCATION 'landing/cities/' OPTIONS ('format.has_header' 'true');
CREATE TABLE raw.people AS SELECT * FROM landing.people;
CREATE TABLE raw.cities AS SELECT * FROM landing.cities;
CREATE TABLE enriched.people AS SELECT upper(person_id) AS who, city, score,
  length(person_id) AS id_length FROM raw.people;
CREATE TABLE enriched.per_city AS SELECT city, count(*) AS people FROM enriched.people GROUP BY city;
CREATE TABLE enriched.city_log WRITE APPEND AS SELECT city FROM STREAM(raw.people);
CREATE TABLE enriched.countries AS SELECT country FROM raw.cities;
";

    async fn traced(column: &str) -> Result<ErasurePlan> {
        let root = std::env::temp_dir().join(format!("strata-erasure-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["landing/people", "landing/cities"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let mut sources = Sources::default();
        sources.add("pipeline.sql", PIPELINE);
        let warehouse = Warehouse::local(&root);
        let compiled = compile(&sources, &warehouse, &Engine::Embedded)
            .await
            .unwrap();
        let lineage = strata_lineage::pipeline(&compiled).unwrap();
        ErasurePlan::new(
            &compiled,
            &lineage,
            Subject {
                column: column.into(),
                value: "p1".into(),
            },
        )
    }

    #[tokio::test]
    async fn lineage_says_which_tables_hold_the_subject_and_which_are_computed_from_it() {
        let plan = traced("PERSON_ID").await.unwrap();
        let names = |tables: &[TableName]| -> Vec<String> {
            tables.iter().map(ToString::to_string).collect()
        };
        assert_eq!(names(&plan.landing), ["landing.people"]);
        let holding: Vec<(String, Vec<String>)> = plan
            .holding
            .iter()
            .map(|holding| (holding.table.to_string(), holding.columns.clone()))
            .collect();
        // `who` carries the value transformed, of the same type; `id_length` does not.
        assert_eq!(
            holding,
            [
                ("raw.people".to_owned(), vec!["person_id".to_owned()]),
                ("enriched.people".to_owned(), vec!["who".to_owned()]),
            ]
        );
        assert_eq!(
            names(&plan.recomputed),
            ["enriched.people", "enriched.per_city"]
        );
        let kept: Vec<String> = plan
            .kept
            .iter()
            .map(|(table, _)| table.to_string())
            .collect();
        assert_eq!(kept, ["enriched.city_log"], "appended from a STREAM");

        let unknown = traced("personid").await.unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "no landing table of the pipeline has a column personid — did you mean person_id?"
        );
    }

    #[test]
    fn a_subject_is_a_column_and_a_value() {
        let subject: Subject = "candidate_id=C=1".parse().unwrap();
        assert_eq!(
            subject,
            Subject {
                column: "candidate_id".into(),
                value: "C=1".into()
            }
        );
        for bad in ["candidate_id", "=C1", "candidate_id=", ""] {
            assert!(
                matches!(bad.parse::<Subject>(), Err(ErasureError::InvalidSubject(_))),
                "{bad}"
            );
        }
    }
}
