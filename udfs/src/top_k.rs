//! `top_k`: the best-scoring items of each group, kept in a bounded heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, StructArray, new_empty_array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
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
        let (k, item_type) = k_and_item_type(&args)?;
        Ok(Box::new(TopKAccumulator {
            k,
            heap: BinaryHeap::new(),
            item_type,
        }))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let (k, item_type) = k_and_item_type(&args)?;
        Ok(Box::new(TopKGroups {
            k,
            heaps: Vec::new(),
            item_type,
            heap_bytes: 0,
        }))
    }
}

/// Reads `k` (a positive integer literal) and the item type from an aggregate call.
fn k_and_item_type(args: &AccumulatorArgs) -> Result<(usize, DataType)> {
    let k = match args
        .exprs
        .get(2)
        .and_then(|expr| expr.downcast_ref::<Literal>())
        .map(Literal::value)
    {
        Some(ScalarValue::Int64(Some(k))) if *k > 0 => *k as usize,
        Some(other) => return plan_err!("{SIGNATURE}: k must be a positive integer, got {other}"),
        None => return plan_err!("{SIGNATURE}: k must be a literal, not a column or expression"),
    };
    Ok((k, args.expr_fields[0].data_type().clone()))
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

/// The rows of a batch that can rank: item and score present, score not NaN.
struct Candidates<'a> {
    items: &'a ArrayRef,
    scores: &'a Float64Array,
    /// Whether any row may be NULL, so clean batches skip the per-row checks.
    nullable: bool,
}

impl<'a> Candidates<'a> {
    fn new(items: &'a ArrayRef, scores: &'a ArrayRef) -> Self {
        let scores = scores.as_primitive::<Float64Type>();
        Self {
            items,
            scores,
            nullable: items.null_count() > 0 || scores.null_count() > 0,
        }
    }

    /// Offers one row to a group's heap; the item is only materialised if it gets in.
    /// Returns how many bytes the heap grew by (negative if it shrank).
    #[inline]
    fn offer(&self, heap: &mut BinaryHeap<Entry>, k: usize, row: usize) -> Result<isize> {
        if self.nullable && (self.scores.is_null(row) || self.items.is_null(row)) {
            return Ok(0);
        }
        let score = self.scores.value(row);
        if score.is_nan() {
            return Ok(0);
        }
        if heap.len() < k {
            let item = ScalarValue::try_from_array(self.items, row)?;
            let (capacity, held) = (heap.capacity(), item_bytes(&item));
            heap.push(Entry { score, item });
            let grown = (heap.capacity() - capacity) * size_of::<Entry>() + held;
            return Ok(grown as isize);
        }
        let Some(mut worst) = heap.peek_mut() else {
            return Ok(0);
        };
        let replace = match score.total_cmp(&worst.score) {
            Ordering::Less => None,
            Ordering::Greater => Some(ScalarValue::try_from_array(self.items, row)?),
            Ordering::Equal => {
                let item = ScalarValue::try_from_array(self.items, row)?;
                (item.partial_cmp(&worst.item) == Some(Ordering::Less)).then_some(item)
            }
        };
        let Some(item) = replace else {
            return Ok(0);
        };
        let grown = item_bytes(&item) as isize - item_bytes(&worst.item) as isize;
        *worst = Entry { score, item };
        Ok(grown)
    }
}

/// The partial states of a batch, as lists of (item, score) entries.
fn state_lists(states: &ArrayRef) -> Result<&ListArray> {
    match states.as_list_opt::<i32>() {
        Some(lists) => Ok(lists),
        None => exec_err!("top_k: unexpected state type {}", states.data_type()),
    }
}

/// Offers every entry of one partial state (one list) to a heap; returns the bytes it grew by.
fn merge_state(
    heap: &mut BinaryHeap<Entry>,
    k: usize,
    lists: &ListArray,
    row: usize,
) -> Result<isize> {
    if lists.is_null(row) {
        return Ok(0);
    }
    let entries = lists.value(row);
    let entries = entries.as_struct();
    let candidates = Candidates::new(entries.column(0), entries.column(1));
    let mut grown = 0;
    for entry in 0..entries.len() {
        grown += candidates.offer(heap, k, entry)?;
    }
    Ok(grown)
}

/// One result list per heap, best first; an empty heap gives NULL.
fn heaps_to_lists<'h>(
    heaps: impl IntoIterator<Item = &'h BinaryHeap<Entry>>,
    item_type: &DataType,
) -> Result<ListArray> {
    let mut items = Vec::new();
    let mut scores = Vec::new();
    let mut lengths = Vec::new();
    let mut valid = Vec::new();
    for heap in heaps {
        let mut entries: Vec<&Entry> = heap.iter().collect();
        entries.sort();
        lengths.push(entries.len());
        valid.push(!entries.is_empty());
        for entry in entries {
            items.push(entry.item.clone());
            scores.push(entry.score);
        }
    }
    let items = if items.is_empty() {
        new_empty_array(item_type)
    } else {
        ScalarValue::iter_to_array(items)?
    };
    let scores: ArrayRef = Arc::new(Float64Array::from(scores));
    let entries = StructArray::try_new(entry_fields(item_type), vec![items, scores], None)?;
    Ok(ListArray::try_new(
        entry_field(item_type),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(entries),
        Some(NullBuffer::from(valid)),
    )?)
}

fn heap_size(heap: &BinaryHeap<Entry>) -> usize {
    heap.capacity() * size_of::<Entry>()
        + heap
            .iter()
            .map(|entry| item_bytes(&entry.item))
            .sum::<usize>()
}

/// Bytes an item holds outside its `ScalarValue` (a string's characters, say).
fn item_bytes(item: &ScalarValue) -> usize {
    item.size() - size_of::<ScalarValue>()
}

/// `top_k` over one group (no GROUP BY, windows).
#[derive(Debug)]
struct TopKAccumulator {
    k: usize,
    heap: BinaryHeap<Entry>,
    item_type: DataType,
}

impl Accumulator for TopKAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let candidates = Candidates::new(&values[0], &values[1]);
        for row in 0..values[1].len() {
            candidates.offer(&mut self.heap, self.k, row)?;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists = state_lists(&states[0])?;
        for row in 0..lists.len() {
            merge_state(&mut self.heap, self.k, lists, row)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let list = heaps_to_lists([&self.heap], &self.item_type)?;
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn size(&self) -> usize {
        size_of_val(self) + heap_size(&self.heap)
    }
}

/// `top_k` for every group of a GROUP BY at once, one heap per group.
struct TopKGroups {
    k: usize,
    heaps: Vec<BinaryHeap<Entry>>,
    item_type: DataType,
    /// What the heaps hold, kept up to date as they change: DataFusion asks for the
    /// size after every batch, and summing every heap then costs groups × k each time.
    heap_bytes: usize,
}

impl TopKGroups {
    fn included(filter: Option<&BooleanArray>, row: usize) -> bool {
        filter.is_none_or(|filter| filter.is_valid(row) && filter.value(row))
    }
}

impl GroupsAccumulator for TopKGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.heaps.resize_with(total_num_groups, BinaryHeap::new);
        let candidates = Candidates::new(&values[0], &values[1]);
        let mut grown = 0;
        for (row, &group) in group_indices.iter().enumerate() {
            if Self::included(opt_filter, row) {
                grown += candidates.offer(&mut self.heaps[group], self.k, row)?;
            }
        }
        self.heap_bytes = self.heap_bytes.saturating_add_signed(grown);
        Ok(())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.heaps.resize_with(total_num_groups, BinaryHeap::new);
        let lists = state_lists(&values[0])?;
        let mut grown = 0;
        for (row, &group) in group_indices.iter().enumerate() {
            grown += merge_state(&mut self.heaps[group], self.k, lists, row)?;
        }
        self.heap_bytes = self.heap_bytes.saturating_add_signed(grown);
        Ok(())
    }

    /// Each input row as its own one-entry state, without copying (used when partial aggregation is skipped).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let (items, scores) = (&values[0], values[1].as_primitive::<Float64Type>());
        let kept: Vec<bool> = (0..scores.len())
            .map(|row| {
                Self::included(opt_filter, row)
                    && items.is_valid(row)
                    && scores.is_valid(row)
                    && !scores.value(row).is_nan()
            })
            .collect();
        let entries = StructArray::try_new(
            entry_fields(&self.item_type),
            vec![Arc::clone(items), Arc::clone(&values[1])],
            None,
        )?;
        let lists = ListArray::try_new(
            entry_field(&self.item_type),
            OffsetBuffer::from_lengths(kept.iter().map(|&keep| usize::from(keep))),
            Arc::new(entries),
            Some(NullBuffer::from(kept)),
        )?;
        Ok(vec![Arc::new(lists)])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let heaps = emit_to.take_needed(&mut self.heaps);
        let taken: usize = heaps.iter().map(heap_size).sum();
        self.heap_bytes = self.heap_bytes.saturating_sub(taken);
        Ok(Arc::new(heaps_to_lists(&heaps, &self.item_type)?))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.heaps.capacity() * size_of::<BinaryHeap<Entry>>() + self.heap_bytes
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;

    use super::*;

    /// The size kept up to date batch by batch equals the heaps summed from scratch.
    #[test]
    fn the_groups_size_follows_what_the_heaps_hold() -> Result<()> {
        let mut groups = TopKGroups {
            k: 3,
            heaps: Vec::new(),
            item_type: DataType::Utf8,
            heap_bytes: 0,
        };
        let summed = |groups: &TopKGroups| groups.heaps.iter().map(heap_size).sum::<usize>();
        for batch in 0..4 {
            let items: ArrayRef =
                Arc::new(StringArray::from_iter_values((0..50).map(|row| {
                    format!("candidate-{batch}-{row}-{}", "x".repeat(row % 7))
                })));
            let scores: ArrayRef = Arc::new(Float64Array::from_iter_values(
                (0..50).map(|row| ((row * 37 + batch * 11) % 23) as f64),
            ));
            let group_indices: Vec<usize> = (0..50).map(|row| row % 4).collect();
            groups.update_batch(&[items, scores], &group_indices, None, 4)?;
            assert_eq!(groups.heap_bytes, summed(&groups), "after batch {batch}");
        }
        let state = groups.state(EmitTo::First(2))?;
        assert_eq!(
            groups.heap_bytes,
            summed(&groups),
            "after emitting two groups"
        );
        groups.merge_batch(&state, &[0, 1], 4)?;
        assert_eq!(
            groups.heap_bytes,
            summed(&groups),
            "after merging them back"
        );
        groups.evaluate(EmitTo::All)?;
        assert_eq!(groups.heap_bytes, 0);
        Ok(())
    }
}
