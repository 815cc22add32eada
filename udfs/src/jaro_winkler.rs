//! `jaro_winkler`: fuzzy similarity of short strings such as job titles.

use datafusion::arrow::array::Float64Builder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::args::{Arg, Strings, array_result, check_arity, coerce_string};

const SIGNATURE: &str = "jaro_winkler(a VARCHAR, b VARCHAR) -> DOUBLE";

/// Winkler's prefix scale.
const PREFIX_SCALE: f64 = 0.1;
/// Longest common prefix that earns a bonus.
const MAX_PREFIX: usize = 4;
/// Winkler's boost threshold: only already-similar strings get the prefix bonus.
const BOOST_THRESHOLD: f64 = 0.7;

/// Jaro-Winkler similarity in [0, 1] over Unicode characters, case-sensitive.
///
/// Two empty strings are identical (1.0); one empty string gives 0.0.
///
/// ```sql
/// SELECT jaro_winkler('MARTHA', 'MARHTA');  -- 0.9611111111111111
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JaroWinkler {
    signature: Signature,
}

impl Default for JaroWinkler {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JaroWinkler {
    fn name(&self) -> &str {
        "jaro_winkler"
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
            coerce_string(SIGNATURE, "a", &arg_types[0])?,
            coerce_string(SIGNATURE, "b", &arg_types[1])?,
        ])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let args = Arg::all(&args.args)?;
        let left = Strings::new(args[0].array().as_ref())?;
        let right = Strings::new(args[1].array().as_ref())?;
        let mut scratch = Scratch::default();
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            match (left.get(args[0].row(row)), right.get(args[1].row(row))) {
                (Some(a), Some(b)) => out.append_value(scratch.jaro_winkler(a, b)),
                _ => out.append_null(),
            }
        }
        array_result(out.finish())
    }
}

/// Buffers reused across rows so scoring a column does not allocate per row.
#[derive(Default)]
struct Scratch {
    a: Vec<char>,
    b: Vec<char>,
    a_matched: Vec<bool>,
    b_matched: Vec<bool>,
}

impl Scratch {
    fn jaro_winkler(&mut self, a: &str, b: &str) -> f64 {
        if a == b {
            return 1.0;
        }
        self.a.clear();
        self.a.extend(a.chars());
        self.b.clear();
        self.b.extend(b.chars());
        let jaro = self.jaro();
        if jaro <= BOOST_THRESHOLD {
            return jaro;
        }
        let prefix = self
            .a
            .iter()
            .zip(&self.b)
            .take(MAX_PREFIX)
            .take_while(|(x, y)| x == y)
            .count();
        jaro + prefix as f64 * PREFIX_SCALE * (1.0 - jaro)
    }

    fn jaro(&mut self) -> f64 {
        let (a, b) = (&self.a, &self.b);
        if a.is_empty() || b.is_empty() {
            return if a.is_empty() && b.is_empty() {
                1.0
            } else {
                0.0
            };
        }
        let window = (a.len().max(b.len()) / 2).saturating_sub(1);
        self.a_matched.clear();
        self.a_matched.resize(a.len(), false);
        self.b_matched.clear();
        self.b_matched.resize(b.len(), false);

        let mut matches = 0usize;
        for (i, ch) in a.iter().enumerate() {
            let (start, end) = (i.saturating_sub(window), (i + window + 1).min(b.len()));
            if start >= end {
                break;
            }
            let found = b[start..end]
                .iter()
                .zip(&self.b_matched[start..end])
                .position(|(other, taken)| !taken && other == ch);
            if let Some(offset) = found {
                self.a_matched[i] = true;
                self.b_matched[start + offset] = true;
                matches += 1;
            }
        }
        if matches == 0 {
            return 0.0;
        }

        let mut out_of_order = 0usize;
        let mut j = 0;
        for (i, ch) in a.iter().enumerate() {
            if !self.a_matched[i] {
                continue;
            }
            while !self.b_matched[j] {
                j += 1;
            }
            if *ch != b[j] {
                out_of_order += 1;
            }
            j += 1;
        }
        let m = matches as f64;
        // Integer halving, as in Winkler's strcmp95 and the common reference implementations.
        let t = (out_of_order / 2) as f64;
        (m / a.len() as f64 + m / b.len() as f64 + (m - t) / m) / 3.0
    }
}
