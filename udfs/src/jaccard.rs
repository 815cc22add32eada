//! `jaccard`: overlap of two sets of exact values.

use datafusion::arrow::array::Float64Builder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::args::{
    Arg, StringLists, array_result, check_arity, coerce_string_list, insert_distinct, shared_count,
};

const SIGNATURE: &str = "jaccard(a LIST<VARCHAR>, b LIST<VARCHAR>) -> DOUBLE";

/// Jaccard similarity |a ∩ b| / |a ∪ b| over distinct, exactly compared values.
///
/// Two empty lists give 0; a NULL list gives NULL; NULL elements are ignored.
///
/// ```sql
/// SELECT jaccard(['rust', 'sql'], ['sql', 'go']);  -- 0.3333333333333333
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Jaccard {
    signature: Signature,
}

impl Default for Jaccard {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Jaccard {
    fn name(&self) -> &str {
        "jaccard"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(SIGNATURE, arg_types, 2..=2)?;
        Ok(vec![
            coerce_string_list(SIGNATURE, "a", &arg_types[0])?,
            coerce_string_list(SIGNATURE, "b", &arg_types[1])?,
        ])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let args = Arg::all(&args.args)?;
        let left = StringLists::new(args[0].array())?;
        let right = StringLists::new(args[1].array())?;
        let (mut left_set, mut right_set) = (Vec::new(), Vec::new());
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            if args[0].is_null(row) || args[1].is_null(row) {
                out.append_null();
                continue;
            }
            left_set.clear();
            left.row(args[0].row(row))
                .for_each(|value| insert_distinct(&mut left_set, value));
            right_set.clear();
            right
                .row(args[1].row(row))
                .for_each(|value| insert_distinct(&mut right_set, value));
            let shared = shared_count(&left_set, &right_set);
            let union = left_set.len() + right_set.len() - shared;
            out.append_value(if union == 0 {
                0.0
            } else {
                shared as f64 / union as f64
            });
        }
        array_result(out.finish())
    }
}
