//! `cosine_similarity`: angle between two embedding vectors.

use datafusion::arrow::array::{Array, AsArray, Float64Builder};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Float64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

use crate::args::{Arg, array_result, check_arity, signature_error};

const SIGNATURE: &str =
    "cosine_similarity(a LIST<FLOAT32 | FLOAT64>, b LIST<FLOAT32 | FLOAT64>) -> DOUBLE";

/// Cosine of the angle between two vectors, for embedding-based matching.
///
/// Accepts `List`, `LargeList` and `FixedSizeList` of floats (integers are widened).
/// Vectors of different lengths are an error; a zero vector, a NULL list or a NULL
/// element gives NULL.
///
/// ```sql
/// SELECT cosine_similarity([1.0, 0.0], [1.0, 1.0]);  -- 0.7071067811865475
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CosineSimilarity {
    signature: Signature,
}

impl Default for CosineSimilarity {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CosineSimilarity {
    fn name(&self) -> &str {
        "cosine_similarity"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(SIGNATURE, arg_types, 2..=2)?;
        arg_types
            .iter()
            .zip(["a", "b"])
            .map(|(data_type, name)| coerce_vector(name, data_type))
            .collect()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let args = Arg::all(&args.args)?;
        let left = Vectors::new(args[0].array().as_ref())?;
        let right = Vectors::new(args[1].array().as_ref())?;
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            let (left_row, right_row) = (args[0].row(row), args[1].row(row));
            if args[0].is_null(row) || args[1].is_null(row) {
                out.append_null();
                continue;
            }
            let (a, b) = (left.range(left_row), right.range(right_row));
            if a.len() != b.len() {
                return exec_err!(
                    "cosine_similarity: vectors have different lengths, a has {} and b has {} (row {row} of the batch)",
                    a.len(),
                    b.len()
                );
            }
            if left.has_null_element(&a) || right.has_null_element(&b) {
                out.append_null();
                continue;
            }
            let (dot, norm_a, norm_b) = match (&left.values, &right.values) {
                (Values::F32(x), Values::F32(y)) => accumulate(&x[a], &y[b]),
                (Values::F32(x), Values::F64(y)) => accumulate(&x[a], &y[b]),
                (Values::F64(x), Values::F32(y)) => accumulate(&x[a], &y[b]),
                (Values::F64(x), Values::F64(y)) => accumulate(&x[a], &y[b]),
            };
            if norm_a == 0.0 || norm_b == 0.0 {
                out.append_null();
            } else {
                out.append_value(dot / (norm_a.sqrt() * norm_b.sqrt()));
            }
        }
        array_result(out.finish())
    }
}

/// Keeps float vectors as they are (no copy) and widens any other numeric element to Float64.
fn coerce_vector(name: &str, data_type: &DataType) -> Result<DataType> {
    let element = |field: &Arc<Field>| -> Result<DataType> {
        match field.data_type() {
            DataType::Float32 | DataType::Float64 => Ok(field.data_type().clone()),
            other if other.is_numeric() || other.is_null() => Ok(DataType::Float64),
            other => signature_error(
                SIGNATURE,
                format!("{name} must be a list of floats, got a list of {other}"),
            ),
        }
    };
    match data_type {
        DataType::Null => Ok(DataType::new_list(DataType::Float64, true)),
        DataType::List(field) | DataType::LargeList(field) => {
            Ok(DataType::new_list(element(field)?, true))
        }
        DataType::FixedSizeList(field, size) => Ok(DataType::FixedSizeList(
            Arc::new(Field::new_list_field(element(field)?, true)),
            *size,
        )),
        other => signature_error(
            SIGNATURE,
            format!("{name} must be a list of floats, got {other}"),
        ),
    }
}

/// Float values of a vector column, read in their own width.
enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Where each row's vector starts, for variable and fixed-size lists alike.
enum Layout<'a> {
    Offsets(&'a [i32]),
    Fixed(usize),
}

/// A read-only view of a coerced vector argument.
struct Vectors<'a> {
    layout: Layout<'a>,
    values: Values<'a>,
    value_nulls: Option<&'a NullBuffer>,
}

impl<'a> Vectors<'a> {
    fn new(array: &'a dyn Array) -> Result<Self> {
        let (layout, values) = match array.data_type() {
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                (Layout::Offsets(list.value_offsets()), list.values())
            }
            DataType::FixedSizeList(_, size) => {
                let list = array.as_fixed_size_list();
                (Layout::Fixed(*size as usize), list.values())
            }
            other => return exec_err!("cosine_similarity: unexpected argument type {other}"),
        };
        let value_nulls = values.nulls();
        let values = match values.data_type() {
            DataType::Float32 => Values::F32(values.as_primitive::<Float32Type>().values()),
            DataType::Float64 => Values::F64(values.as_primitive::<Float64Type>().values()),
            other => return exec_err!("cosine_similarity: unexpected element type {other}"),
        };
        Ok(Self {
            layout,
            values,
            value_nulls,
        })
    }

    fn range(&self, row: usize) -> std::ops::Range<usize> {
        match self.layout {
            Layout::Offsets(offsets) => offsets[row] as usize..offsets[row + 1] as usize,
            Layout::Fixed(size) => row * size..(row + 1) * size,
        }
    }

    fn has_null_element(&self, range: &std::ops::Range<usize>) -> bool {
        self.value_nulls
            .is_some_and(|nulls| range.clone().any(|index| nulls.is_null(index)))
    }
}

/// Dot product and squared norms in one pass, in f64 whatever the input width.
#[inline]
fn accumulate<A, B>(a: &[A], b: &[B]) -> (f64, f64, f64)
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    a.iter()
        .zip(b)
        .fold((0.0, 0.0, 0.0), |(dot, norm_a, norm_b), (&x, &y)| {
            let (x, y): (f64, f64) = (x.into(), y.into());
            (dot + x * y, norm_a + x * x, norm_b + y * y)
        })
}
