//! The functions masks are written with: each hides a value, or most of it, and
//! `hash_pii` replaces it with a pseudonym keyed by the warehouse's secret, so equal
//! values still join.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, StringBuilder, StringViewBuilder, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use strata_storage::{StorageError, Warehouse};

use crate::error::{AccessError, Result as AccessResult};

/// The name of the pseudonym function, which needs the warehouse's key.
pub(crate) const HASH_PII: &str = "hash_pii";
/// What `redact` and the hidden part of `mask_email` and `last4` show.
const HIDDEN: &str = "***";
/// Bytes of the keyed hash a pseudonym keeps: 128 bits, written as 32 hex digits.
const PSEUDONYM_BYTES: usize = 16;

/// Every masking function, with `hash_pii` keyed by `key`.
pub fn masking_functions(key: Option<HashPii>) -> Vec<Arc<ScalarUDF>> {
    let mut functions = vec![
        Arc::new(ScalarUDF::new_from_impl(TextMask::new(
            "mask_email",
            mask_email,
        ))),
        Arc::new(ScalarUDF::new_from_impl(TextMask::new("redact", redact))),
        Arc::new(ScalarUDF::new_from_impl(TextMask::new("last4", last4))),
        Arc::new(ScalarUDF::new_from_impl(YearOnly::default())),
        Arc::new(ScalarUDF::new_from_impl(Nullify::default())),
    ];
    if let Some(key) = key {
        functions.push(Arc::new(ScalarUDF::new_from_impl(key)));
    }
    functions
}

/// `ana.garcia@example.com` → `a***@example.com`; text without `@` is hidden whole.
fn mask_email(value: &str, out: &mut String) {
    match value.split_once('@') {
        Some((local, domain)) => {
            out.extend(local.chars().take(1));
            out.push_str(HIDDEN);
            out.push('@');
            out.push_str(domain);
        }
        None => out.push_str(HIDDEN),
    }
}

fn redact(_value: &str, out: &mut String) {
    out.push_str(HIDDEN);
}

/// Every character but the last four as `*`: `612345678` → `*****5678`.
fn last4(value: &str, out: &mut String) {
    let count = value.chars().count();
    let kept = count.saturating_sub(4);
    out.extend(std::iter::repeat_n('*', kept));
    if count <= 4 {
        out.extend(std::iter::repeat_n('*', count));
    } else {
        out.extend(value.chars().skip(kept));
    }
}

/// What a text mask gives for an argument of `input`: the same kind of string, so
/// nothing is cast on the way out (other types are read as text, and give `Utf8`).
fn text_type(input: &DataType) -> DataType {
    match input {
        DataType::Utf8View => DataType::Utf8View,
        _ => DataType::Utf8,
    }
}

/// Masks each value of the argument, as text, into an array of [`text_type`], through
/// one buffer for every row.
fn map_text(args: &ScalarFunctionArgs, mask: impl Fn(&str, &mut String)) -> Result<ColumnarValue> {
    let array = args.args[0].to_array(args.number_rows)?;
    let masked: ArrayRef = match array.data_type() {
        DataType::Utf8View => {
            let mut out = StringViewBuilder::with_capacity(array.len());
            each_masked(array.as_string_view().iter(), &mask, |value| {
                out.append_option(value)
            });
            Arc::new(out.finish())
        }
        _ => {
            let text = cast(&array, &DataType::Utf8)?;
            let mut out = StringBuilder::with_capacity(text.len(), text.len() * 16);
            each_masked(text.as_string::<i32>().iter(), &mask, |value| {
                out.append_option(value)
            });
            Arc::new(out.finish())
        }
    };
    Ok(ColumnarValue::Array(masked))
}

/// Hands each value masked (NULL stays NULL) to `emit`, written into one buffer.
fn each_masked<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    mask: &impl Fn(&str, &mut String),
    mut emit: impl FnMut(Option<&str>),
) {
    let mut buffer = String::new();
    for value in values {
        match value {
            Some(value) => {
                buffer.clear();
                mask(value, &mut buffer);
                emit(Some(&buffer));
            }
            None => emit(None),
        }
    }
}

/// A mask from any value, read as text, to text.
#[derive(Debug)]
struct TextMask {
    name: &'static str,
    mask: fn(&str, &mut String),
    signature: Signature,
}

/// Masks are told apart by name: each name has one function.
impl PartialEq for TextMask {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TextMask {}

impl std::hash::Hash for TextMask {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl TextMask {
    fn new(name: &'static str, mask: fn(&str, &mut String)) -> Self {
        Self {
            name,
            mask,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TextMask {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(text_type(&arg_types[0]))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_text(&args, self.mask)
    }
}

/// `year_only(date_or_timestamp)`: the first day of the value's year, as a DATE.
#[derive(Debug, PartialEq, Eq, Hash)]
struct YearOnly {
    signature: Signature,
}

impl Default for YearOnly {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for YearOnly {
    fn name(&self) -> &str {
        "year_only"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Null => {
                Ok(DataType::Date32)
            }
            other => plan_err!("year_only(DATE or TIMESTAMP) -> DATE: got {other}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = args.args[0].to_array(args.number_rows)?;
        let dates = cast(&array, &DataType::Date32)?;
        let dates = dates
            .as_any()
            .downcast_ref::<Date32Array>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("cast to Date32".into()))?;
        let epoch = NaiveDate::default();
        let years: Date32Array = dates
            .iter()
            .map(|days| {
                let date = epoch.checked_add_signed(chrono::Duration::days(i64::from(days?)))?;
                let first = NaiveDate::from_ymd_opt(date.year(), 1, 1)?;
                i32::try_from(first.signed_duration_since(epoch).num_days()).ok()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(years)))
    }
}

/// `nullify(value)`: NULL of the value's type, so queries over the column still plan.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Nullify {
    signature: Signature,
}

impl Default for Nullify {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Nullify {
    fn name(&self) -> &str {
        "nullify"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let data_type = args.args[0].data_type();
        Ok(ColumnarValue::Array(new_null_array(
            &data_type,
            args.number_rows,
        )))
    }
}

/// `hash_pii(value)`: BLAKE3 in keyed mode (a PRF, as HMAC is, at a tenth of
/// HMAC-SHA256's cost on short values) of the value as text under the warehouse's
/// secret, 32 hex digits. Stable for a warehouse, so a hashed key still joins; without
/// the secret a value cannot be tested against it.
#[derive(PartialEq, Eq, Hash)]
pub struct HashPii {
    key: [u8; 32],
    signature: Signature,
}

impl std::fmt::Debug for HashPii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashPii { key: <redacted> }")
    }
}

impl HashPii {
    /// The function's SQL name.
    pub const NAME: &str = HASH_PII;

    /// The function with this key, as the cluster's plans carry it to executors.
    pub fn with_key(key: &[u8]) -> Option<Self> {
        Some(Self {
            key: key.try_into().ok()?,
            signature: Signature::any(1, Volatility::Immutable),
        })
    }

    /// The key, for a plan's trip to executors (never shown in plans or logs).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The function keyed by `warehouse`'s secret, made on first use. Of two processes
    /// making it at once, one writes it and both read that one.
    pub async fn of_warehouse(warehouse: &Warehouse) -> AccessResult<Self> {
        let path = warehouse.pii_key();
        let shown = warehouse.display_path(&path);
        let store = warehouse.store();
        let failed = |error: object_store::Error| StorageError::store(&shown, &error);
        let read = |bytes: &[u8]| {
            hex::decode(bytes.trim_ascii())
                .ok()
                .and_then(|key| Self::with_key(&key))
                .ok_or_else(|| StorageError::Corrupt {
                    location: shown.clone(),
                    reason: "not a 32-byte key in hex".to_owned(),
                })
        };
        match store.get(&path).await {
            Ok(found) => return Ok(read(&found.bytes().await.map_err(failed)?)?),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(failed(error).into()),
        }
        let mut key = [0_u8; 32];
        getrandom::fill(&mut key).map_err(|_| AccessError::NoRandomness)?;
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match store
            .put_opts(&path, PutPayload::from(hex::encode(key)), create)
            .await
        {
            Ok(_) => Ok(Self::with_key(&key).ok_or(AccessError::NoRandomness)?),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let found = store.get(&path).await.map_err(failed)?;
                Ok(read(&found.bytes().await.map_err(failed)?)?)
            }
            Err(error) => Err(failed(error).into()),
        }
    }

    fn pseudonym(&self, value: &str, out: &mut String) {
        let hash = blake3::keyed_hash(&self.key, value.as_bytes());
        let mut digits = [0_u8; 2 * PSEUDONYM_BYTES];
        if hex::encode_to_slice(&hash.as_bytes()[..PSEUDONYM_BYTES], &mut digits).is_ok() {
            out.extend(digits.iter().map(|&digit| char::from(digit)));
        }
    }
}

impl ScalarUDFImpl for HashPii {
    fn name(&self) -> &str {
        HASH_PII
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(text_type(&arg_types[0]))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_text(&args, |value, out| self.pseudonym(value, out))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    fn masked(mask: fn(&str, &mut String), value: &str) -> String {
        let mut out = String::new();
        mask(value, &mut out);
        out
    }

    #[test]
    fn masks_keep_only_what_they_say() {
        assert_eq!(
            masked(mask_email, "ana.garcia@example.com"),
            "a***@example.com"
        );
        assert_eq!(masked(mask_email, "@example.com"), "***@example.com");
        assert_eq!(masked(mask_email, "no-at-sign"), "***");
        assert_eq!(masked(last4, "612345678"), "*****5678");
        assert_eq!(masked(last4, "123"), "***");
        assert_eq!(masked(last4, "ñañañaña"), "****ñaña");
    }

    #[tokio::test]
    async fn masking_functions_run_in_sql_over_any_type() {
        let ctx = SessionContext::new();
        let key = HashPii::with_key(&[7; 32]);
        for function in masking_functions(key) {
            ctx.register_udf(function.as_ref().clone());
        }
        let batches = ctx
            .sql(
                "SELECT mask_email('bo@x.es') AS e, redact(42) AS r, last4(612345678) AS l, \
                   year_only(DATE '2024-07-31') AS y, year_only(TIMESTAMP '1999-12-31 23:00:00') AS t, \
                   nullify(7) AS n, hash_pii('42') = hash_pii(42) AS stable, \
                   length(hash_pii('a')) AS width, hash_pii(CAST(NULL AS VARCHAR)) AS none",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        for expected in [
            "b***@x.es",
            "***",
            "*****5678",
            "2024-01-01",
            "1999-01-01",
            "true",
            "32",
        ] {
            assert!(shown.contains(expected), "{expected} in\n{shown}");
        }
        assert_eq!(batches[0].column(5).data_type(), &DataType::Int64);
        assert_eq!(batches[0].column(5).null_count(), 1);
        let other = HashPii::with_key(&[8; 32]).unwrap();
        let pseudonym = |hash: &HashPii| {
            let mut out = String::new();
            hash.pseudonym("a", &mut out);
            out
        };
        assert_ne!(
            pseudonym(&HashPii::with_key(&[7; 32]).unwrap()),
            pseudonym(&other),
            "another warehouse's pseudonyms differ"
        );
        assert!(format!("{other:?}").contains("redacted"));
    }

    #[tokio::test]
    async fn a_warehouse_keeps_one_key() {
        let root = std::env::temp_dir().join(format!("strata-pii-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let warehouse = Warehouse::local(&root);
        let (first, second) = tokio::join!(
            HashPii::of_warehouse(&warehouse),
            HashPii::of_warehouse(&warehouse)
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.key(), second.key());
        std::fs::write(root.join("_strata/pii.key"), "short").unwrap();
        let corrupt = HashPii::of_warehouse(&warehouse).await.unwrap_err();
        assert!(
            corrupt.to_string().contains("not a 32-byte key"),
            "{corrupt}"
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
