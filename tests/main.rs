//! Strata's integration tests, in one binary because every test binary links DataFusion.

mod check;
mod cli;
mod cluster;
mod example;
mod flight;
mod publish;
mod run;
mod slt;
mod support;
mod top_k;
