//! `recency_decay`: exponential decay of a signal by its age.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Float64Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, DurationNanosecondType, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
    TimeUnit, TimestampNanosecondType,
};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::args::{Arg, array_result, check_arity, coerce_timestamp, signature_error};

const SIGNATURE: &str = "recency_decay(ts TIMESTAMP, now TIMESTAMP, half_life INTERVAL) -> DOUBLE";

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// A month counts as 30 days, as PostgreSQL does when it turns an interval into seconds.
const DAYS_PER_MONTH: i128 = 30;

/// `0.5 ^ ((now - ts) / half_life)`: 1.0 for fresh activity, halving every `half_life`.
///
/// A `ts` after `now` gives 1.0. A half-life of zero or less is an error.
///
/// ```sql
/// SELECT recency_decay(TIMESTAMP '2026-10-22 00:00:00', TIMESTAMP '2026-11-21 00:00:00', INTERVAL '30 days');  -- 0.5
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RecencyDecay {
    signature: Signature,
}

impl Default for RecencyDecay {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for RecencyDecay {
    fn name(&self) -> &str {
        "recency_decay"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(SIGNATURE, arg_types, 3..=3)?;
        let half_life = match &arg_types[2] {
            DataType::Interval(_) | DataType::Null => {
                DataType::Interval(IntervalUnit::MonthDayNano)
            }
            DataType::Duration(_) => DataType::Duration(TimeUnit::Nanosecond),
            other => {
                return signature_error(
                    SIGNATURE,
                    format!("half_life must be an INTERVAL, got {other}"),
                );
            }
        };
        Ok(vec![
            coerce_timestamp(SIGNATURE, "ts", &arg_types[0])?,
            coerce_timestamp(SIGNATURE, "now", &arg_types[1])?,
            half_life,
        ])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let args = Arg::all(&args.args)?;
        let ts = timestamp_nanos(args[0].array())?;
        let now = timestamp_nanos(args[1].array())?;
        let half_life = half_life_nanos(args[2].array())?;
        let (ts_values, now_values) = (
            ts.as_primitive::<TimestampNanosecondType>().values(),
            now.as_primitive::<TimestampNanosecondType>().values(),
        );
        if ts.null_count() == 0
            && now.null_count() == 0
            && args[2].is_scalar()
            && !args[2].is_null(0)
        {
            // The usual call: one literal half-life, no NULL timestamps.
            let half_life = half_life[0];
            if half_life <= 0 {
                return exec_err!(
                    "recency_decay: half_life must be positive, got {}",
                    describe_nanos(half_life)
                );
            }
            let per_nano = 1.0 / half_life as f64;
            let weights: Vec<f64> = (0..rows)
                .map(|row| {
                    let age = i128::from(now_values[args[1].row(row)])
                        - i128::from(ts_values[args[0].row(row)]);
                    if age <= 0 {
                        1.0
                    } else {
                        (-(age as f64) * per_nano).exp2()
                    }
                })
                .collect();
            return array_result(Float64Array::from(weights));
        }
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            let (ts_row, now_row, half_row) =
                (args[0].row(row), args[1].row(row), args[2].row(row));
            if ts.is_null(ts_row) || now.is_null(now_row) || args[2].is_null(row) {
                out.append_null();
                continue;
            }
            let half_life = half_life[half_row];
            if half_life <= 0 {
                return exec_err!(
                    "recency_decay: half_life must be positive, got {} (row {row} of the batch)",
                    describe_nanos(half_life)
                );
            }
            let age = i128::from(now_values[now_row]) - i128::from(ts_values[ts_row]);
            out.append_value(if age <= 0 {
                1.0
            } else {
                (-(age as f64) / half_life as f64).exp2()
            });
        }
        array_result(out.finish())
    }
}

/// Brings any timestamp unit to nanoseconds since the epoch, keeping the zone so no wall-clock shift happens.
fn timestamp_nanos(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Ok(Arc::clone(array)),
        DataType::Timestamp(_, zone) => Ok(cast(
            array,
            &DataType::Timestamp(TimeUnit::Nanosecond, zone.clone()),
        )?),
        other => exec_err!("recency_decay: expected a timestamp, got {other}"),
    }
}

/// Reads each half-life as a nanosecond count (NULL rows read as 0 and are skipped by the caller).
fn half_life_nanos(array: &ArrayRef) -> Result<Vec<i128>> {
    match array.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => Ok(array
            .as_primitive::<IntervalMonthDayNanoType>()
            .values()
            .iter()
            .map(|interval| interval_nanos(*interval))
            .collect()),
        DataType::Duration(TimeUnit::Nanosecond) => Ok(array
            .as_primitive::<DurationNanosecondType>()
            .values()
            .iter()
            .map(|nanos| i128::from(*nanos))
            .collect()),
        other => exec_err!("recency_decay: half_life has unexpected type {other}"),
    }
}

fn interval_nanos(interval: IntervalMonthDayNano) -> i128 {
    (i128::from(interval.months) * DAYS_PER_MONTH + i128::from(interval.days)) * NANOS_PER_DAY
        + i128::from(interval.nanoseconds)
}

fn describe_nanos(nanos: i128) -> String {
    format!("{} seconds", nanos as f64 / 1e9)
}
