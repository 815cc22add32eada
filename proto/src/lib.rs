//! Generated code for Strata's wire formats.

/// The pipeline service: submit, watch, list and cancel runs on a scheduler.
pub mod pipeline {
    tonic::include_proto!("strata.pipeline");
}

/// Strata's physical plan nodes, as the plan codec encodes them.
pub mod plan {
    tonic::include_proto!("strata.plan");
}
