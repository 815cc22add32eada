//! `skill_match`: how much of a job's wanted skill set a candidate has.

use datafusion::arrow::array::Float64Builder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::args::{
    Arg, StringLists, array_result, check_arity, coerce_string_list, insert_distinct, normalize,
    shared_count,
};

const SIGNATURE: &str = "skill_match(have LIST<VARCHAR>, want LIST<VARCHAR>) -> DOUBLE";

/// Share of the distinct `want` skills found in `have`, compared trimmed and lower-cased.
///
/// Returns a value in [0, 1], or NULL when either list is NULL or `want` has no skills.
///
/// ```sql
/// SELECT skill_match(['Rust', ' sql'], ['rust', 'SQL', 'kafka']);  -- 0.6666666666666666
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SkillMatch {
    signature: Signature,
}

impl Default for SkillMatch {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SkillMatch {
    fn name(&self) -> &str {
        "skill_match"
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
            coerce_string_list(SIGNATURE, "have", &arg_types[0])?,
            coerce_string_list(SIGNATURE, "want", &arg_types[1])?,
        ])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let args = Arg::all(&args.args)?;
        let have = StringLists::new(args[0].array())?;
        let want = StringLists::new(args[1].array())?;

        // A literal `want` list (the common case: one job's skills) is normalised once.
        let mut cached_want = None;
        let mut have_set = Vec::new();
        let mut want_set = Vec::new();
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            if args[0].is_null(row) || args[1].is_null(row) {
                out.append_null();
                continue;
            }
            let wanted = if args[1].is_scalar() {
                cached_want.get_or_insert_with(|| {
                    let mut set = Vec::new();
                    want.row(0)
                        .for_each(|skill| insert_distinct(&mut set, normalize(skill)));
                    set
                })
            } else {
                want_set.clear();
                want.row(row)
                    .for_each(|skill| insert_distinct(&mut want_set, normalize(skill)));
                &want_set
            };
            if wanted.is_empty() {
                out.append_null();
                continue;
            }
            have_set.clear();
            have_set.extend(have.row(args[0].row(row)).map(normalize));
            out.append_value(shared_count(wanted, &have_set) as f64 / wanted.len() as f64);
        }
        array_result(out.finish())
    }
}
