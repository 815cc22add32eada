//! `tokenize`: split free text into comparable words.

use datafusion::arrow::array::{ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::args::{Arg, Strings, array_result, check_arity, coerce_string};
use crate::tokens::for_each_token;

const SIGNATURE: &str = "tokenize(text VARCHAR) -> LIST<VARCHAR>";

/// Lower-cased runs of Unicode letters and digits, the unit `bm25` scores on.
///
/// ```sql
/// SELECT tokenize('Senior Rust/SQL Engineer, Zürich');  -- [senior, rust, sql, engineer, zürich]
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Tokenize {
    signature: Signature,
}

impl Default for Tokenize {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Tokenize {
    fn name(&self) -> &str {
        "tokenize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::new_list(DataType::Utf8, true))
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(SIGNATURE, arg_types, 1..=1)?;
        Ok(vec![coerce_string(SIGNATURE, "text", &arg_types[0])?])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let args = Arg::all(&args.args)?;
        let text = Strings::new(args[0].array().as_ref())?;
        let mut out = ListBuilder::with_capacity(StringBuilder::new(), rows);
        let mut buffer = String::new();
        for row in 0..rows {
            match text.get(args[0].row(row)) {
                None => out.append_null(),
                Some(text) => {
                    for_each_token(text, &mut buffer, |token| out.values().append_value(token));
                    out.append(true);
                }
            }
        }
        array_result(out.finish())
    }
}
