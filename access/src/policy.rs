//! A table's masks and row filters: taken from the pipeline that builds it, kept in
//! the warehouse beside its data, and turned into the one query readers see it through.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::Expr;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use strata_language::{Pipeline, Policy, PolicyKind, Statement, TableName};
use strata_storage::{StorageError, Warehouse};

use crate::error::{AccessError, Result};
use crate::viewer::Viewer;

/// `CREATE MASK name ON table (column) AS expr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mask {
    pub name: String,
    pub column: String,
    pub expr: String,
}

/// `CREATE ROW FILTER name ON table AS predicate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowFilter {
    pub name: String,
    pub predicate: String,
}

/// Everything readers of one table see it through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePolicy {
    pub masks: Vec<Mask>,
    pub row_filters: Vec<RowFilter>,
}

impl TablePolicy {
    /// The policy of every table a pipeline builds, empty where it declares none.
    pub fn of_pipeline(pipeline: &Pipeline) -> BTreeMap<TableName, TablePolicy> {
        let mut policies: BTreeMap<TableName, TablePolicy> = pipeline
            .statements
            .iter()
            .filter(|statement| matches!(statement, Statement::Table(_)))
            .map(|statement| (statement.name().clone(), TablePolicy::default()))
            .collect();
        for declared in &pipeline.policies {
            if let Some(policy) = policies.get_mut(&declared.table) {
                policy.add(declared);
            }
        }
        policies
    }

    /// A policy of one declaration, to check it alone.
    pub fn of_one(declared: &Policy) -> TablePolicy {
        let mut policy = TablePolicy::default();
        policy.add(declared);
        policy
    }

    fn add(&mut self, declared: &Policy) {
        let expr = declared.expr.to_string();
        match &declared.kind {
            PolicyKind::Mask { column } => self.masks.push(Mask {
                name: declared.name.clone(),
                column: column.clone(),
                expr,
            }),
            PolicyKind::RowFilter => self.row_filters.push(RowFilter {
                name: declared.name.clone(),
                predicate: expr,
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.masks.is_empty() && self.row_filters.is_empty()
    }

    /// The columns whose values readers see only masked.
    pub fn masked_columns(&self) -> impl Iterator<Item = &str> {
        self.masks.iter().map(|mask| mask.column.as_str())
    }

    /// The query `viewer` sees `table` (SQL that names the stored table) through: every
    /// masked column replaced in place, then only the rows every row filter keeps.
    pub fn query(&self, table: &str, from: &str, viewer: &Viewer) -> Result<String> {
        let bound = |sql: &str| -> Result<String> {
            let mut expr = parse(table, sql)?;
            viewer.bind(&mut expr);
            Ok(expr.to_string())
        };
        let mut query = String::from("SELECT *");
        if !self.masks.is_empty() {
            let replaced = self
                .masks
                .iter()
                .map(|mask| {
                    Ok(format!(
                        "{} AS {}",
                        bound(&mask.expr)?,
                        quoted(&mask.column)
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            query.push_str(&format!(" REPLACE ({})", replaced.join(", ")));
        }
        query.push_str(&format!(" FROM {from}"));
        let filters = self
            .row_filters
            .iter()
            .map(|filter| Ok(format!("({})", bound(&filter.predicate)?)))
            .collect::<Result<Vec<_>>>()?;
        if !filters.is_empty() {
            query.push_str(&format!(" WHERE {}", filters.join(" AND ")));
        }
        Ok(query)
    }

    /// Whether a reader needs the warehouse's pseudonym key (a mask hashes).
    pub fn hashes(&self) -> bool {
        self.masks
            .iter()
            .map(|mask| mask.expr.as_str())
            .chain(self.row_filters.iter().map(|f| f.predicate.as_str()))
            .any(|sql| sql.to_ascii_lowercase().contains(crate::masking::HASH_PII))
    }

    /// Keeps the policy of `table` in the warehouse, or removes it when empty; done
    /// before the table's data is built, so no new data is published unmasked.
    pub async fn publish(&self, warehouse: &Warehouse, table: &TableName) -> Result<()> {
        let path = warehouse.policy(table);
        let shown = warehouse.display_path(&path);
        if self.is_empty() {
            return match warehouse.store().delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(StorageError::store(&shown, &error).into()),
            };
        }
        let text = serde_json::to_vec_pretty(self).map_err(|error| AccessError::Invalid {
            table: table.to_string(),
            reason: error.to_string(),
        })?;
        warehouse
            .store()
            .put(&path, PutPayload::from(text))
            .await
            .map_err(|error| StorageError::store(&shown, &error))?;
        Ok(())
    }

    /// The policy readers of `table` see it through, if it has one.
    pub async fn load(warehouse: &Warehouse, table: &TableName) -> Result<Option<TablePolicy>> {
        let path = warehouse.policy(table);
        let shown = warehouse.display_path(&path);
        let bytes = match warehouse.store().get(&path).await {
            Ok(found) => found
                .bytes()
                .await
                .map_err(|error| StorageError::store(&shown, &error))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(StorageError::store(&shown, &error).into()),
        };
        let policy: TablePolicy =
            serde_json::from_slice(&bytes).map_err(|error| StorageError::Corrupt {
                location: shown,
                reason: error.to_string(),
            })?;
        Ok(Some(policy))
    }
}

/// An identifier as SQL writes it, keeping its case.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn parse(table: &str, sql: &str) -> Result<Expr> {
    Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|error| AccessError::Invalid {
            table: table.to_owned(),
            reason: format!("{sql}: {error}"),
        })
}

#[cfg(test)]
mod tests {
    use strata_language::{Sources, parse as parse_pipeline};

    use super::*;

    #[test]
    fn a_pipelines_policies_become_one_query_per_reader() {
        let mut sources = Sources::default();
        sources.add(
            "p.sql",
            "CREATE TABLE enriched.people AS SELECT 1 AS id, 'a@b.c' AS email, 'x' AS city;\n\
             CREATE TABLE enriched.open AS SELECT 1 AS id;\n\
             CREATE MASK m ON enriched.people (email) AS \
               CASE WHEN current_role() = 'admin' THEN email ELSE mask_email(email) END;\n\
             CREATE ROW FILTER f ON enriched.people AS city = current_user();\n\
             CREATE ROW FILTER g ON enriched.people AS id > 0;",
        );
        let pipeline = parse_pipeline(&sources).unwrap();
        let policies = TablePolicy::of_pipeline(&pipeline);
        let open = &policies[&TableName::parse("enriched.open").unwrap()];
        assert!(open.is_empty());
        let people = &policies[&TableName::parse("enriched.people").unwrap()];
        let viewer = Viewer {
            user: "madrid".into(),
            role: None,
        };
        assert_eq!(
            people.query("enriched.people", "t", &viewer).unwrap(),
            "SELECT * REPLACE (CASE WHEN CAST(NULL AS VARCHAR) = 'admin' THEN email \
             ELSE mask_email(email) END AS \"email\") FROM t WHERE (city = 'madrid') AND (id > 0)"
        );
        assert!(!people.hashes());
        let round_trip: TablePolicy =
            serde_json::from_str(&serde_json::to_string(people).unwrap()).unwrap();
        assert_eq!(&round_trip, people);
    }

    #[tokio::test]
    async fn a_policy_is_kept_beside_its_table_and_a_damaged_one_is_an_error() {
        let root = std::env::temp_dir().join(format!("strata-policy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let warehouse = Warehouse::local(&root);
        let table = TableName::parse("enriched.people").unwrap();
        assert_eq!(TablePolicy::load(&warehouse, &table).await.unwrap(), None);
        let policy = TablePolicy {
            masks: vec![Mask {
                name: "m".into(),
                column: "email".into(),
                expr: "mask_email(email)".into(),
            }],
            row_filters: Vec::new(),
        };
        policy.publish(&warehouse, &table).await.unwrap();
        assert_eq!(
            TablePolicy::load(&warehouse, &table).await.unwrap(),
            Some(policy)
        );
        // A pipeline that drops its policies removes the file.
        TablePolicy::default()
            .publish(&warehouse, &table)
            .await
            .unwrap();
        assert_eq!(TablePolicy::load(&warehouse, &table).await.unwrap(), None);
        // A damaged file is an error, never "no policy".
        let path = root.join("_strata/policies/enriched.people.json");
        std::fs::write(&path, "{ not json").unwrap();
        let damaged = TablePolicy::load(&warehouse, &table).await.unwrap_err();
        assert!(
            damaged.to_string().contains("enriched.people.json"),
            "{damaged}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
