//! Strata's integration tests, in one binary because every test binary links DataFusion.

mod autoscale;
mod check;
mod cli;
mod cluster;
mod continuous;
mod example;
mod flight;
mod incremental;
mod k8s;
mod publish;
mod rejects;
mod run;
mod slt;
mod stores;
mod support;
mod top_k;
