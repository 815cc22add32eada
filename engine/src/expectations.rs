//! Expectations at run time: each row of a build is kept, dropped, quarantined, or
//! stops the build, and every row is counted exactly once.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use datafusion::arrow::compute::{and, filter_record_batch, not, or_kleene, prep_null_mask_filter};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::ExprWithAlias;

use strata_language::{Expectation, OnViolation};

use crate::task_error::TaskError;

/// Columns a quarantine table adds to the rows it holds.
pub const QUARANTINE_COLUMNS: [&str; 2] = ["_violations", "_run_id"];

/// The outcome of checking a build's rows.
#[derive(Debug, Default)]
pub struct Split {
    pub kept: Vec<RecordBatch>,
    pub quarantined: Vec<RecordBatch>,
    pub dropped: u64,
}

/// One expectation compiled against a build's output schema.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub on_violation: OnViolation,
    pub predicate: Arc<dyn PhysicalExpr>,
}

/// Expectations compiled against a build's output schema.
#[derive(Debug, Clone)]
pub struct Checker {
    rules: Vec<Rule>,
    quarantine_schema: SchemaRef,
    run_id: String,
}

impl Checker {
    /// Plans each expectation's predicate against the rows it will see.
    pub fn new(
        expectations: &[Expectation],
        schema: &SchemaRef,
        state: &SessionState,
        run_id: &str,
    ) -> Result<Self> {
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let rules = expectations
            .iter()
            .map(|expectation| {
                let expr = state.create_logical_expr_from_sql_expr(
                    ExprWithAlias {
                        expr: expectation.predicate.clone(),
                        alias: None,
                    },
                    &df_schema,
                )?;
                Ok(Rule {
                    name: expectation.name.clone(),
                    on_violation: expectation.on_violation,
                    predicate: state.create_physical_expr(expr, &df_schema)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::from_rules(rules, schema, run_id))
    }

    /// A checker from rules compiled elsewhere (a plan decoded on an executor).
    pub fn from_rules(rules: Vec<Rule>, schema: &SchemaRef, run_id: &str) -> Self {
        Self {
            rules,
            quarantine_schema: quarantine_schema(schema),
            run_id: run_id.to_owned(),
        }
    }

    /// The compiled rules, for encoding.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The run whose id quarantined rows carry.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The schema of quarantined rows: the table's columns plus why and when.
    pub fn quarantine_schema(&self) -> &SchemaRef {
        &self.quarantine_schema
    }

    /// Sorts one batch's rows; a broken `FAIL` expectation is an error naming it and the row count.
    ///
    /// A predicate that is NULL passes, as in SQL `CHECK` constraints. A row breaking
    /// several expectations counts once: quarantine wins over drop.
    pub fn split(&self, batch: &RecordBatch, into: &mut Split) -> Result<()> {
        if self.rules.is_empty() {
            into.kept.push(batch.clone());
            return Ok(());
        }
        let rows = batch.num_rows();
        let mut violations: Vec<(&Rule, BooleanArray)> = Vec::new();
        for expectation in &self.rules {
            let result = expectation.predicate.evaluate(batch)?.into_array(rows)?;
            let Some(passed) = result.as_any().downcast_ref::<BooleanArray>() else {
                return Err(DataFusionError::Execution(format!(
                    "expectation {} did not evaluate to a boolean",
                    expectation.name
                )));
            };
            // NULL passes: violated only where the predicate is false.
            let negated = not(passed)?;
            // The kernel needs a null buffer; without one the negation is already the mask.
            let violated = if negated.null_count() > 0 {
                prep_null_mask_filter(&negated)
            } else {
                negated
            };
            let count = violated.true_count();
            if count > 0 && expectation.on_violation == OnViolation::Fail {
                return Err(TaskError::ExpectationFailed {
                    expectation: expectation.name.clone(),
                    rows: count as u64,
                }
                .into_datafusion());
            }
            violations.push((expectation, violated));
        }
        let any_of = |action: OnViolation| -> Result<BooleanArray> {
            violations
                .iter()
                .filter(|(expectation, _)| expectation.on_violation == action)
                .try_fold(
                    BooleanArray::from(vec![false; rows]),
                    |acc, (_, violated)| or_kleene(&acc, violated),
                )
                .map_err(DataFusionError::from)
        };
        let quarantine = any_of(OnViolation::Quarantine)?;
        let drop = any_of(OnViolation::DropRow)?;
        let removed = or_kleene(&quarantine, &drop)?;
        into.dropped += and(&drop, &not(&quarantine)?)?.true_count() as u64;
        into.kept.push(filter_record_batch(batch, &not(&removed)?)?);
        if quarantine.true_count() > 0 {
            let held = filter_record_batch(batch, &quarantine)?;
            let mut names = ListBuilder::new(StringBuilder::new());
            for row in (0..rows).filter(|&row| quarantine.value(row)) {
                for (expectation, violated) in &violations {
                    if violated.value(row) {
                        names.values().append_value(&expectation.name);
                    }
                }
                names.append(true);
            }
            let mut columns: Vec<ArrayRef> = held.columns().to_vec();
            columns.push(Arc::new(names.finish()));
            columns.push(Arc::new(StringArray::from(vec![
                self.run_id.as_str();
                held.num_rows()
            ])));
            into.quarantined.push(RecordBatch::try_new(
                Arc::clone(&self.quarantine_schema),
                columns,
            )?);
        }
        Ok(())
    }
}

fn quarantine_schema(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| field.as_ref().clone())
        .collect();
    fields.push(Field::new(
        QUARANTINE_COLUMNS[0],
        DataType::new_list(DataType::Utf8, true),
        false,
    ));
    fields.push(Field::new(QUARANTINE_COLUMNS[1], DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}
