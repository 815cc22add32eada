//! `strata gen`: synthetic recruitment landing data for the example and benchmarks.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use strata_gen::Options;

use crate::error::CliError;

/// Arguments of `strata gen`.
#[derive(Args)]
pub struct GenArgs {
    /// Size: 1 is about one million tracking events; fractions such as 0.01 make test sets.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Directory to write to; data lands under `<out>/landing/`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed for every random choice: the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Leave out the bad rows and the malformed file.
    #[arg(long)]
    pub no_bad_data: bool,
}

/// Generates the data and prints what was written.
pub fn run(args: GenArgs, out: &mut impl Write) -> Result<(), CliError> {
    let started = Instant::now();
    let manifest = strata_gen::generate(&Options {
        out: args.out.clone(),
        scale: args.scale,
        seed: args.seed,
        bad_data: !args.no_bad_data,
    })?;
    writeln!(
        out,
        "wrote {} files ({:.1} MB) to {} in {:.1}s",
        manifest.files,
        manifest.bytes as f64 / 1e6,
        args.out.join("landing").display(),
        started.elapsed().as_secs_f64()
    )?;
    writeln!(
        out,
        "  candidates  {:>9} (+{} corrections, gzip CSV)",
        manifest.candidates, manifest.candidate_updates
    )?;
    writeln!(
        out,
        "  jobs        {:>9} ({} open, Parquet)",
        manifest.jobs, manifest.open_jobs
    )?;
    writeln!(out, "  searches    {:>9} (NDJSON)", manifest.searches)?;
    writeln!(
        out,
        "  events      {:>9} (gzip CSV, one file a day)",
        manifest.events
    )?;
    if !args.no_bad_data {
        writeln!(
            out,
            "  bad data: {} events without a job, {} events from 2009, {} unparsable events, {} candidates with impossible coordinates, malformed: {}",
            manifest.events_missing_job,
            manifest.events_too_old,
            manifest.events_unparsable,
            manifest.candidates_bad_coordinates,
            manifest.malformed_files.join(", ")
        )?;
    }
    writeln!(
        out,
        "  manifest: {}",
        args.out.join("landing/manifest.json").display()
    )?;
    Ok(())
}
