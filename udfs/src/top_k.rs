//! `top_k`: the best-scoring items of each group, kept in a bounded heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, ListArray, StructArray, new_empty_array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;

use crate::args::{check_arity, coerce_float, signature_error};

const SIGNATURE: &str =
    "top_k(item ANY, score DOUBLE, k BIGINT) -> LIST<STRUCT<item, score DOUBLE>>";

/// The `k` highest-scoring items of a group, best first, ties broken by item ascending.
///
/// Rows whose item or score is NULL, or whose score is NaN, are skipped; a group
/// with no such row gives NULL. `k` must be a positive integer literal. Partial
/// states merge, so the result is the same under two-phase (Ballista) aggregation.
///
/// ```sql
/// SELECT job_id, top_k(candidate_id, score, 50) FROM matches GROUP BY job_id;
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TopK {
    signature: Signature,
}

impl Default for TopK {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The struct fields of one result entry, for an item type.
fn entry_fields(item_type: &DataType) -> Fields {
    Fields::from(vec![
        Field::new("item", item_type.clone(), true),
        Field::new("score", DataType::Float64, true),
    ])
}

/// The list element field of the result, for an item type.
fn entry_field(item_type: &DataType) -> FieldRef {
    Arc::new(Field::new_list_field(
        DataType::Struct(entry_fields(item_type)),
        true,
    ))
}

impl AggregateUDFImpl for TopK {
    fn name(&self) -> &str {
        "top_k"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(SIGNATURE, arg_types, 3..=3)?;
        if !(arg_types[2].is_integer() || arg_types[2].is_null()) {
            return signature_error(
                SIGNATURE,
                format!("k must be an integer, got {}", arg_types[2]),
            );
        }
        Ok(vec![
            arg_types[0].clone(),
            coerce_float(SIGNATURE, "score", &arg_types[1])?,
            DataType::Int64,
        ])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(entry_field(&arg_types[0])))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "top_k"),
            args.return_type().clone(),
            true,
        ))])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let k = match args
            .exprs
            .get(2)
            .and_then(|expr| expr.downcast_ref::<Literal>())
            .map(Literal::value)
        {
            Some(ScalarValue::Int64(Some(k))) if *k > 0 => *k as usize,
            Some(other) => {
                return plan_err!("{SIGNATURE}: k must be a positive integer, got {other}");
            }
            None => {
                return plan_err!("{SIGNATURE}: k must be a literal, not a column or expression");
            }
        };
        let item_type = args.expr_fields[0].data_type().clone();
        Ok(Box::new(TopKAccumulator {
            k,
            heap: BinaryHeap::with_capacity(k.min(1024)),
            item_type,
        }))
    }
}

/// One kept item; ordered so that the worst entry is the greatest and sits on top of the heap.
#[derive(Debug, Clone)]
struct Entry {
    score: f64,
    item: ScalarValue,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then_with(|| {
            self.item
                .partial_cmp(&other.item)
                .unwrap_or(Ordering::Equal)
        })
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

/// Bounded heap of the best `k` entries; its state is the same list it evaluates to.
#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    heap: BinaryHeap<Entry>,
    item_type: DataType,
}

impl TopKAccumulator {
    /// Offers every row of an (items, scores) pair; an item is only materialised if it gets in.
    fn offer(&mut self, items: &ArrayRef, scores: &ArrayRef) -> Result<()> {
        let scores = scores.as_primitive::<Float64Type>();
        for row in 0..scores.len() {
            if scores.is_null(row) || items.is_null(row) {
                continue;
            }
            let score = scores.value(row);
            if score.is_nan() {
                continue;
            }
            if self.heap.len() < self.k {
                let item = ScalarValue::try_from_array(items, row)?;
                self.heap.push(Entry { score, item });
                continue;
            }
            let Some(mut worst) = self.heap.peek_mut() else {
                continue;
            };
            let replace = match score.total_cmp(&worst.score) {
                Ordering::Less => None,
                Ordering::Greater => Some(ScalarValue::try_from_array(items, row)?),
                Ordering::Equal => {
                    let item = ScalarValue::try_from_array(items, row)?;
                    (item.partial_cmp(&worst.item) == Some(Ordering::Less)).then_some(item)
                }
            };
            if let Some(item) = replace {
                *worst = Entry { score, item };
            }
        }
        Ok(())
    }

    /// The kept entries, best first, as a one-row list.
    fn to_list(&self) -> Result<ScalarValue> {
        let mut entries: Vec<&Entry> = self.heap.iter().collect();
        entries.sort();
        let items = if entries.is_empty() {
            new_empty_array(&self.item_type)
        } else {
            ScalarValue::iter_to_array(entries.iter().map(|entry| entry.item.clone()))?
        };
        let scores: ArrayRef = Arc::new(Float64Array::from_iter_values(
            entries.iter().map(|entry| entry.score),
        ));
        let entries_array =
            StructArray::try_new(entry_fields(&self.item_type), vec![items, scores], None)?;
        let list = ListArray::try_new(
            entry_field(&self.item_type),
            OffsetBuffer::from_lengths([entries_array.len()]),
            Arc::new(entries_array),
            None,
        )?;
        Ok(ScalarValue::List(Arc::new(list)))
    }
}

impl Accumulator for TopKAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.offer(&values[0], &values[1])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states[0].as_list_opt::<i32>() else {
            return exec_err!("top_k: unexpected state type {}", states[0].data_type());
        };
        for row in 0..lists.len() {
            if lists.is_null(row) {
                continue;
            }
            let entries = lists.value(row);
            let entries = entries.as_struct();
            self.offer(entries.column(0), entries.column(1))?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.to_list()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.heap.is_empty() {
            return ScalarValue::try_from(&DataType::List(entry_field(&self.item_type)));
        }
        self.to_list()
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self.heap.capacity() * size_of::<Entry>()
            + self
                .heap
                .iter()
                .map(|entry| entry.item.size() - size_of::<ScalarValue>())
                .sum::<usize>()
    }
}
