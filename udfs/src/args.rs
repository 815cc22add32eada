//! Argument handling shared by the scalar functions: type coercion with readable
//! errors, and zero-copy views over column or literal arguments.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, GenericListArray, StringArray, StringViewArray,
};
use datafusion::arrow::datatypes::{DataType, Float64Type, TimeUnit};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::ColumnarValue;

/// One argument as an Arrow array; a literal stays a single row instead of being repeated.
pub(crate) struct Arg {
    array: ArrayRef,
    scalar: bool,
}

impl Arg {
    /// Views every argument of a call, keeping literals at one row.
    pub(crate) fn all(args: &[ColumnarValue]) -> Result<Vec<Arg>> {
        args.iter()
            .map(|arg| {
                Ok(match arg {
                    ColumnarValue::Array(array) => Arg {
                        array: Arc::clone(array),
                        scalar: false,
                    },
                    ColumnarValue::Scalar(value) => Arg {
                        array: value.to_array_of_size(1)?,
                        scalar: true,
                    },
                })
            })
            .collect()
    }

    /// The underlying array (one row for a literal).
    pub(crate) fn array(&self) -> &ArrayRef {
        &self.array
    }

    /// Whether the argument is a literal, so per-call work can be done once.
    pub(crate) fn is_scalar(&self) -> bool {
        self.scalar
    }

    /// Maps an output row to the row of this argument that feeds it.
    #[inline]
    pub(crate) fn row(&self, row: usize) -> usize {
        if self.scalar { 0 } else { row }
    }

    /// Whether the value feeding output `row` is NULL.
    #[inline]
    pub(crate) fn is_null(&self, row: usize) -> bool {
        self.array.is_null(self.row(row))
    }

    /// The argument as Float64 values; callers coerce numeric types to Float64 first.
    pub(crate) fn f64_values(&self) -> &[f64] {
        self.array.as_primitive::<Float64Type>().values()
    }
}

/// Builds the planning error every function gives for a wrong call, naming its signature.
pub(crate) fn signature_error<T>(signature: &str, detail: impl std::fmt::Display) -> Result<T> {
    plan_err!("{signature}: {detail}")
}

/// Checks the argument count against what a signature accepts.
pub(crate) fn check_arity(
    signature: &str,
    arg_types: &[DataType],
    accepted: std::ops::RangeInclusive<usize>,
) -> Result<()> {
    if accepted.contains(&arg_types.len()) {
        return Ok(());
    }
    let expected = if accepted.start() == accepted.end() {
        accepted.start().to_string()
    } else {
        format!("{} to {}", accepted.start(), accepted.end())
    };
    signature_error(
        signature,
        format!(
            "expected {expected} arguments, got {} ({})",
            arg_types.len(),
            type_list(arg_types)
        ),
    )
}

/// Renders argument types for error messages.
pub(crate) fn type_list(arg_types: &[DataType]) -> String {
    arg_types
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a type can stand in for a string argument without a lossy cast.
pub(crate) fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Coerces a numeric (or NULL) argument to Float64, or explains why not.
pub(crate) fn coerce_float(
    signature: &str,
    position: &str,
    data_type: &DataType,
) -> Result<DataType> {
    if data_type.is_numeric() || data_type.is_null() {
        Ok(DataType::Float64)
    } else {
        signature_error(
            signature,
            format!("{position} must be numeric, got {data_type}"),
        )
    }
}

/// Coerces a string (or NULL) argument to a string type the functions read natively.
pub(crate) fn coerce_string(
    signature: &str,
    position: &str,
    data_type: &DataType,
) -> Result<DataType> {
    match data_type {
        DataType::Utf8 | DataType::Utf8View => Ok(data_type.clone()),
        DataType::LargeUtf8 | DataType::Null => Ok(DataType::Utf8),
        other => signature_error(
            signature,
            format!("{position} must be a string, got {other}"),
        ),
    }
}

/// Coerces a list-of-strings argument to `List<Utf8 | Utf8View>`, keeping the element type.
pub(crate) fn coerce_string_list(
    signature: &str,
    position: &str,
    data_type: &DataType,
) -> Result<DataType> {
    let element = match data_type {
        DataType::Null => DataType::Utf8,
        DataType::List(field) | DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
            match field.data_type() {
                DataType::Utf8View => DataType::Utf8View,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Null => DataType::Utf8,
                other => {
                    return signature_error(
                        signature,
                        format!("{position} must be a list of strings, got a list of {other}"),
                    );
                }
            }
        }
        other => {
            return signature_error(
                signature,
                format!("{position} must be a list of strings, got {other}"),
            );
        }
    };
    Ok(DataType::new_list(element, true))
}

/// Coerces a timestamp-like argument; timestamps keep their unit and zone, dates and strings become nanosecond timestamps.
pub(crate) fn coerce_timestamp(
    signature: &str,
    position: &str,
    data_type: &DataType,
) -> Result<DataType> {
    match data_type {
        DataType::Timestamp(_, _) => Ok(data_type.clone()),
        DataType::Date32 | DataType::Date64 | DataType::Null => {
            Ok(DataType::Timestamp(TimeUnit::Nanosecond, None))
        }
        data_type if is_string(data_type) => Ok(DataType::Timestamp(TimeUnit::Nanosecond, None)),
        other => signature_error(
            signature,
            format!("{position} must be a timestamp, got {other}"),
        ),
    }
}

/// Read access to the strings of a `Utf8` or `Utf8View` array without copying.
pub(crate) enum Strings<'a> {
    Utf8(&'a StringArray),
    View(&'a StringViewArray),
}

impl<'a> Strings<'a> {
    /// Views an array that coercion made `Utf8` or `Utf8View`.
    pub(crate) fn new(array: &'a dyn Array) -> Result<Self> {
        match array.data_type() {
            DataType::Utf8 => Ok(Strings::Utf8(array.as_string::<i32>())),
            DataType::Utf8View => Ok(Strings::View(array.as_string_view())),
            other => exec_err!("expected a string array, got {other}"),
        }
    }

    /// The string at `index`, or `None` when it is NULL.
    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&'a str> {
        match self {
            Strings::Utf8(array) => array.is_valid(index).then(|| array.value(index)),
            Strings::View(array) => array.is_valid(index).then(|| array.value(index)),
        }
    }
}

/// Read access to a `List<Utf8 | Utf8View>` argument, row by row.
pub(crate) struct StringLists<'a> {
    list: &'a GenericListArray<i32>,
    values: Strings<'a>,
}

impl<'a> StringLists<'a> {
    /// Views an array that coercion made a list of strings.
    pub(crate) fn new(array: &'a dyn Array) -> Result<Self> {
        let list = array.as_list::<i32>();
        let values = Strings::new(list.values().as_ref())?;
        Ok(Self { list, values })
    }

    /// The non-NULL strings of the list at `row`.
    pub(crate) fn row(&self, row: usize) -> impl Iterator<Item = &'a str> + use<'a, '_> {
        let offsets = self.list.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        (start..end).filter_map(|index| self.values.get(index))
    }
}

/// Lower-cases and trims a value, borrowing when it is already normalised.
#[inline]
pub(crate) fn normalize(value: &str) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    // One pass decides the common case: clean lower-case ASCII needs no copy.
    let clean = bytes
        .iter()
        .all(|&byte| byte.is_ascii() && !byte.is_ascii_uppercase())
        && !bytes.first().is_some_and(u8::is_ascii_whitespace)
        && !bytes.last().is_some_and(u8::is_ascii_whitespace);
    if clean {
        return Cow::Borrowed(value);
    }
    let trimmed = value.trim();
    if trimmed.is_ascii() {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Owned(trimmed.to_lowercase())
    }
}

/// Adds a value to a small set held in a vector; for skill lists a scan beats hashing and sorting.
#[inline]
pub(crate) fn insert_distinct<T: PartialEq>(set: &mut Vec<T>, value: T) {
    if !set.contains(&value) {
        set.push(value);
    }
}

/// Counts the members of `set` that also occur in `values`.
#[inline]
pub(crate) fn shared_count<T: PartialEq>(set: &[T], values: &[T]) -> usize {
    set.iter().filter(|member| values.contains(member)).count()
}

/// Wraps a finished output array as the function result.
pub(crate) fn array_result(array: impl Array + 'static) -> Result<ColumnarValue> {
    Ok(ColumnarValue::Array(Arc::new(array)))
}
