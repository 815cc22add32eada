//! Native ranking functions for Strata: scoring candidates against jobs inside
//! DataFusion plans, on one machine or on Ballista executors.
//!
//! Every function is vectorised over Arrow arrays, takes columns or literals in any
//! mix, and rejects wrong argument types at planning time with its signature.

mod args;
mod bm25;
mod cosine_similarity;
mod geo_distance;
mod jaccard;
mod jaro_winkler;
mod recency_decay;
mod skill_match;
mod tokenize;
mod tokens;
mod top_k;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

pub use bm25::Bm25;
pub use cosine_similarity::CosineSimilarity;
pub use geo_distance::GeoDistanceKm;
pub use jaccard::Jaccard;
pub use jaro_winkler::JaroWinkler;
pub use recency_decay::RecencyDecay;
pub use skill_match::SkillMatch;
pub use tokenize::Tokenize;
pub use top_k::TopK;

/// Every scalar ranking function, for registries that are filled by hand (Ballista executors).
pub fn scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::new_from_impl(SkillMatch::default())),
        Arc::new(ScalarUDF::new_from_impl(Jaccard::default())),
        Arc::new(ScalarUDF::new_from_impl(GeoDistanceKm::default())),
        Arc::new(ScalarUDF::new_from_impl(RecencyDecay::default())),
        Arc::new(ScalarUDF::new_from_impl(CosineSimilarity::default())),
        Arc::new(ScalarUDF::new_from_impl(Tokenize::default())),
        Arc::new(ScalarUDF::new_from_impl(Bm25::default())),
        Arc::new(ScalarUDF::new_from_impl(JaroWinkler::default())),
    ]
}

/// Every aggregate ranking function.
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![Arc::new(AggregateUDF::new_from_impl(TopK::default()))]
}

/// Registers every Strata function on a session, the one call a client needs.
pub fn register_all(ctx: &SessionContext) {
    for udf in scalar_functions() {
        ctx.register_udf(udf.as_ref().clone());
    }
    for udaf in aggregate_functions() {
        ctx.register_udaf(udaf.as_ref().clone());
    }
}

/// Registers every Strata function into any function registry (session states, executors).
pub fn register(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for udf in scalar_functions() {
        registry.register_udf(udf)?;
    }
    for udaf in aggregate_functions() {
        registry.register_udaf(udaf)?;
    }
    Ok(())
}
