//! A set of key values as a predicate on a Delta table's rows. deltalake turns an
//! `IN (…)` list into one comparison per value to skip files, which for thousands of
//! values costs more than the rewrite it selects; a large set is instead bounded by its
//! least and greatest value (what skips files) and tested row by row through a hash set.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
    in_list, lit,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{InListExpr, col};

/// Values beyond which a set is tested through a hash set rather than listed.
const LISTED: usize = 64;

/// The predicate that `column` holds one of `values` (a `NULL` among them matches
/// `NULL`), for deltalake's own operations in this process: a large set is a function
/// no other process knows (a plan sent to executors lists the values, [`listed`]).
pub fn among(column: Expr, values: &HashSet<ScalarValue>) -> Result<Expr> {
    let mut present: Vec<ScalarValue> = values.iter().filter(|v| !v.is_null()).cloned().collect();
    if present.len() <= LISTED {
        return Ok(listed(column, values));
    }
    present.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let (least, greatest) = (present[0].clone(), present[present.len() - 1].clone());
    let set = ScalarUDF::new_from_impl(KeySet::try_new(present)?);
    let holds = column
        .clone()
        .between(lit(least), lit(greatest))
        .and(set.call(vec![column.clone()]));
    Ok(or_null(holds, column, values))
}

/// The predicate that `column` holds one of `values`, as an `IN (…)` list.
pub fn listed(column: Expr, values: &HashSet<ScalarValue>) -> Expr {
    let present = values.iter().filter(|v| !v.is_null()).cloned().map(lit);
    let holds = in_list(column.clone(), present.collect(), false);
    or_null(holds, column, values)
}

fn or_null(holds: Expr, column: Expr, values: &HashSet<ScalarValue>) -> Expr {
    if values.iter().any(ScalarValue::is_null) {
        holds.or(column.is_null())
    } else {
        holds
    }
}

/// `key_set(column)`: whether the column's value is in the set, through a hash set.
#[derive(Debug)]
struct KeySet {
    values: Vec<ScalarValue>,
    array: ArrayRef,
    signature: Signature,
    /// The membership test, built on first use.
    test: OnceLock<Arc<dyn PhysicalExpr>>,
}

impl KeySet {
    fn try_new(values: Vec<ScalarValue>) -> Result<Self> {
        let array = ScalarValue::iter_to_array(values.iter().cloned())?;
        Ok(Self {
            signature: Signature::exact(vec![array.data_type().clone()], Volatility::Immutable),
            values,
            array,
            test: OnceLock::new(),
        })
    }

    fn schema(&self) -> Schema {
        Schema::new(vec![Field::new(
            "key",
            self.array.data_type().clone(),
            true,
        )])
    }
}

impl PartialEq for KeySet {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl Eq for KeySet {}

impl Hash for KeySet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.values.hash(state);
    }
}

impl ScalarUDFImpl for KeySet {
    fn name(&self) -> &str {
        "key_set"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let schema = Arc::new(self.schema());
        let test = match self.test.get() {
            Some(test) => Arc::clone(test),
            None => {
                let built: Arc<dyn PhysicalExpr> = Arc::new(InListExpr::try_new_from_array(
                    col("key", &schema)?,
                    Arc::clone(&self.array),
                    false,
                    &schema,
                )?);
                Arc::clone(self.test.get_or_init(|| built))
            }
        };
        let keys = args.args[0].to_array(args.number_rows)?;
        test.evaluate(&RecordBatch::try_new(schema, vec![keys])?)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn matching(values: &HashSet<ScalarValue>) -> Vec<i64> {
        let listed = matching_by(listed(datafusion::prelude::col("k"), values)).await;
        let among = matching_by(among(datafusion::prelude::col("k"), values).unwrap()).await;
        assert_eq!(listed, among);
        among
    }

    async fn matching_by(predicate: Expr) -> Vec<i64> {
        let ctx = SessionContext::new();
        let rows = ctx
            .sql("SELECT column1 AS k FROM (VALUES (1), (5), (70), (99), (NULL)) AS t")
            .await
            .unwrap();
        let batches = rows.filter(predicate).unwrap().collect().await.unwrap();
        let mut found: Vec<i64> = batches
            .iter()
            .flat_map(|batch| {
                let column = batch.column(0);
                (0..batch.num_rows()).map(move |row| {
                    match ScalarValue::try_from_array(column, row).unwrap() {
                        ScalarValue::Int64(value) => value.unwrap_or(-1),
                        other => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        found.sort_unstable();
        found
    }

    #[tokio::test]
    async fn small_and_large_sets_select_the_same_rows() {
        let small: HashSet<ScalarValue> = [1i64, 70, 1000].map(ScalarValue::from).into();
        assert_eq!(matching(&small).await, [1, 70]);
        let large: HashSet<ScalarValue> = (0..500i64)
            .filter(|v| v % 7 == 0)
            .map(ScalarValue::from)
            .collect();
        assert_eq!(matching(&large).await, [70]);
        let mut with_null = large.clone();
        with_null.insert(ScalarValue::Int64(None));
        assert_eq!(matching(&with_null).await, [-1, 70], "NULL matches NULL");
    }
}
