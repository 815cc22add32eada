//! `bm25`: keyword relevance of a document to a query.

use datafusion::arrow::array::Float64Builder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::args::{Arg, Strings, array_result, check_arity, coerce_float, coerce_string};
use crate::tokens::for_each_token;

const SIGNATURE: &str =
    "bm25(document VARCHAR, query VARCHAR, avg_doc_len DOUBLE [, k1 DOUBLE, b DOUBLE]) -> DOUBLE";

/// Okapi BM25 term-frequency saturation parameter, as in Lucene.
const DEFAULT_K1: f64 = 1.2;
/// Okapi BM25 length-normalisation parameter, as in Lucene.
const DEFAULT_B: f64 = 0.75;

/// Okapi BM25 of `document` for the distinct tokens of `query`, every IDF taken as 1.
///
/// Corpus statistics (IDF weights, the average length) come in through SQL, so the
/// function stays a pure per-row score. Tokens are those of `tokenize`.
///
/// ```sql
/// SELECT bm25('rust engineer rust', 'rust', 3.0);  -- 1.375
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Bm25 {
    signature: Signature,
}

impl Default for Bm25 {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Bm25 {
    fn name(&self) -> &str {
        "bm25"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(SIGNATURE, arg_types, 3..=5)?;
        if arg_types.len() == 4 {
            return crate::args::signature_error(
                SIGNATURE,
                "k1 and b go together: pass both or neither",
            );
        }
        let mut coerced = vec![
            coerce_string(SIGNATURE, "document", &arg_types[0])?,
            coerce_string(SIGNATURE, "query", &arg_types[1])?,
        ];
        for (data_type, name) in arg_types[2..].iter().zip(["avg_doc_len", "k1", "b"]) {
            coerced.push(coerce_float(SIGNATURE, name, data_type)?);
        }
        Ok(coerced)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let args = Arg::all(&args.args)?;
        let documents = Strings::new(args[0].array().as_ref())?;
        let queries = Strings::new(args[1].array().as_ref())?;
        let numbers: Vec<&[f64]> = args[2..].iter().map(Arg::f64_values).collect();

        let mut buffer = String::new();
        let mut terms: Vec<String> = Vec::new();
        let mut terms_from_row = None;
        let mut frequencies: Vec<u32> = Vec::new();
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            if args.iter().any(|arg| arg.is_null(row)) {
                out.append_null();
                continue;
            }
            let number = |i: usize| numbers[i][args[i + 2].row(row)];
            let avg_doc_len = number(0);
            let (k1, b) = if numbers.len() == 3 {
                (number(1), number(2))
            } else {
                (DEFAULT_K1, DEFAULT_B)
            };
            check_parameters(avg_doc_len, k1, b, row)?;

            // A literal query is tokenized once for the whole batch.
            let query_row = args[1].row(row);
            if terms_from_row != Some(query_row) {
                terms.clear();
                if let Some(query) = queries.get(query_row) {
                    for_each_token(query, &mut buffer, |token| terms.push(token.to_owned()));
                }
                terms.sort_unstable();
                terms.dedup();
                terms_from_row = Some(query_row);
            }

            frequencies.clear();
            frequencies.resize(terms.len(), 0);
            let mut doc_len = 0u32;
            if let Some(document) = documents.get(args[0].row(row)) {
                for_each_token(document, &mut buffer, |token| {
                    doc_len += 1;
                    if let Ok(index) = terms.binary_search_by(|term| term.as_str().cmp(token)) {
                        frequencies[index] += 1;
                    }
                });
            }
            let norm = k1 * (1.0 - b + b * f64::from(doc_len) / avg_doc_len);
            let score = frequencies
                .iter()
                .filter(|tf| **tf > 0)
                .map(|tf| {
                    let tf = f64::from(*tf);
                    tf * (k1 + 1.0) / (tf + norm)
                })
                .sum::<f64>();
            out.append_value(score);
        }
        array_result(out.finish())
    }
}

fn check_parameters(avg_doc_len: f64, k1: f64, b: f64, row: usize) -> Result<()> {
    if !(avg_doc_len > 0.0 && avg_doc_len.is_finite()) {
        return exec_err!(
            "bm25: avg_doc_len must be a positive number, got {avg_doc_len} (row {row} of the batch)"
        );
    }
    if !(k1 >= 0.0 && k1.is_finite()) {
        return exec_err!("bm25: k1 must be zero or positive, got {k1} (row {row} of the batch)");
    }
    if !(0.0..=1.0).contains(&b) {
        return exec_err!("bm25: b must be within [0, 1], got {b} (row {row} of the batch)");
    }
    Ok(())
}
