//! `strata gen`: synthetic recruitment landing data for the example and benchmarks.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use strata_gen::Options;
use strata_storage::StoreUrl;
use strata_storage::store::{StoreKind, upload_dir};

use crate::error::CliError;

/// Arguments of `strata gen`.
#[derive(Args)]
pub(crate) struct GenArgs {
    /// Size: 1 is about one million tracking events; fractions such as 0.01 make test sets.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Directory or store URL (`s3://bucket/prefix`…) to write to; data lands under
    /// `<out>/landing/`.
    #[arg(long, value_name = "PATH_OR_URL")]
    pub out: String,
    /// Seed for every random choice: the same seed gives the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Leave out the bad rows and the malformed file.
    #[arg(long)]
    pub no_bad_data: bool,
}

/// Generates the data and prints what was written. Data for a store is generated in a
/// scratch directory, then uploaded.
pub(crate) async fn run(args: GenArgs, out: &mut impl Write) -> Result<(), CliError> {
    let started = Instant::now();
    let target = StoreUrl::parse(&args.out)?;
    let local = match target.kind() {
        StoreKind::Local => PathBuf::from(target.display()),
        _ => std::env::temp_dir().join(format!("strata-gen-{}", std::process::id())),
    };
    let manifest = strata_gen::generate(&Options {
        out: local.clone(),
        scale: args.scale,
        seed: args.seed,
        bad_data: !args.no_bad_data,
    })?;
    if target.kind() != StoreKind::Local {
        let uploaded = upload_dir(&local.join("landing"), &target.child("landing")).await;
        let _ = std::fs::remove_dir_all(&local);
        uploaded?;
    }
    let landing = target.child("landing");
    writeln!(
        out,
        "wrote {} files ({:.1} MB) to {} in {:.1}s",
        manifest.files,
        manifest.bytes as f64 / 1e6,
        landing.display(),
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
        landing.child("manifest.json").display()
    )?;
    Ok(())
}
