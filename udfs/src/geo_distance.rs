//! `geo_distance_km`: great-circle distance between two coordinates.

use datafusion::arrow::array::{Array, Float64Array, Float64Builder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::args::{Arg, array_result, check_arity, coerce_float};

const SIGNATURE: &str =
    "geo_distance_km(lat1 DOUBLE, lon1 DOUBLE, lat2 DOUBLE, lon2 DOUBLE) -> DOUBLE";

/// Mean Earth radius (IUGG), in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0088;

const ARG_NAMES: [&str; 4] = ["lat1", "lon1", "lat2", "lon2"];

/// Haversine distance in kilometres; a coordinate out of range is an error, not a wrong score.
///
/// ```sql
/// SELECT geo_distance_km(48.8566, 2.3522, 51.5074, -0.1278);  -- 343.5 (Paris to London)
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GeoDistanceKm {
    signature: Signature,
}

impl Default for GeoDistanceKm {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for GeoDistanceKm {
    fn name(&self) -> &str {
        "geo_distance_km"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(SIGNATURE, arg_types, 4..=4)?;
        arg_types
            .iter()
            .zip(ARG_NAMES)
            .map(|(data_type, name)| coerce_float(SIGNATURE, name, data_type))
            .collect()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let args = Arg::all(&args.args)?;
        let values: Vec<&[f64]> = args.iter().map(Arg::f64_values).collect();
        if args.iter().all(|arg| arg.array().null_count() == 0) {
            // No NULLs: validate each argument in one pass, then a tight loop the compiler can pipeline.
            for (index, limit) in [90.0, 180.0, 90.0, 180.0].into_iter().enumerate() {
                if let Some(row) = values[index]
                    .iter()
                    .position(|v| !(-limit..=limit).contains(v))
                {
                    check_coordinate(ARG_NAMES[index], values[index][row], limit, row)?;
                }
            }
            let distances: Vec<f64> = (0..rows)
                .map(|row| {
                    let [lat1, lon1, lat2, lon2] =
                        std::array::from_fn(|i| values[i][args[i].row(row)]);
                    haversine_km(lat1, lon1, lat2, lon2)
                })
                .collect();
            return array_result(Float64Array::from(distances));
        }
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            if args.iter().any(|arg| arg.is_null(row)) {
                out.append_null();
                continue;
            }
            let [lat1, lon1, lat2, lon2] = std::array::from_fn(|i| values[i][args[i].row(row)]);
            check_coordinate(ARG_NAMES[0], lat1, 90.0, row)?;
            check_coordinate(ARG_NAMES[1], lon1, 180.0, row)?;
            check_coordinate(ARG_NAMES[2], lat2, 90.0, row)?;
            check_coordinate(ARG_NAMES[3], lon2, 180.0, row)?;
            out.append_value(haversine_km(lat1, lon1, lat2, lon2));
        }
        array_result(out.finish())
    }
}

fn check_coordinate(name: &str, value: f64, limit: f64, row: usize) -> Result<()> {
    if (-limit..=limit).contains(&value) {
        Ok(())
    } else {
        exec_err!(
            "geo_distance_km: {name} = {value} is outside [-{limit}, {limit}] (row {row} of the batch)"
        )
    }
}

/// The haversine formula, clamped so rounding can never push `asin` past its domain.
#[inline]
fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let half_dphi = (phi2 - phi1) / 2.0;
    let half_dlambda = (lon2 - lon1).to_radians() / 2.0;
    let a = half_dphi.sin().powi(2) + phi1.cos() * phi2.cos() * half_dlambda.sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}
