//! Strata's integration tests, in one binary because every test binary links DataFusion.

mod cli;
mod slt;
mod top_k;
