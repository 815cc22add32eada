//! Strata's integration tests, in one binary because every test binary links DataFusion.

// Tests state what they expect with unwrap, helpers included.
#![allow(clippy::unwrap_used)]

mod access;
mod audit;
mod autoscale;
mod backfill;
mod chaos;
mod check;
mod cli;
mod cluster;
mod console;
mod continuous;
mod corpus;
mod encrypted;
mod erasure;
mod example;
mod flight;
mod flight_limits;
mod incremental;
mod k8s;
mod kafka;
mod lineage;
mod policies;
mod publish;
mod readme;
mod refresh_property;
mod rejects;
mod run;
mod schedule;
mod slt;
mod stores;
mod support;
mod task_errors;
mod top_k;
