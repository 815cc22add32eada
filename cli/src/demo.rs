//! `strata demo`: generate data, run the recruitment example embedded, and show the
//! best candidates for a few jobs. The example's SQL is built into the binary.

use std::io::Write;

use arrow::util::pretty::pretty_format_batches;
use clap::Args;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::ObjectStoreExt;
use strata_gen::Options;
use strata_language::{Layer, TableName};
use strata_storage::store::upload_dir;
use strata_storage::{StoreRegistry, StoreUrl, Warehouse, delta_publish};

use crate::error::CliError;
use crate::generate::GenArgs;
use crate::run::{BuildArgs, RunArgs};

/// The recruitment example, one file per layer.
const PIPELINE: [(&str, &str); 4] = [
    (
        "10_landing.sql",
        include_str!("../../examples/recruitment/10_landing.sql"),
    ),
    (
        "20_raw.sql",
        include_str!("../../examples/recruitment/20_raw.sql"),
    ),
    (
        "30_enriched.sql",
        include_str!("../../examples/recruitment/30_enriched.sql"),
    ),
    (
        "40_ranked.sql",
        include_str!("../../examples/recruitment/40_ranked.sql"),
    ),
];

/// Arguments of `strata demo`.
#[derive(Args)]
pub(crate) struct DemoArgs {
    /// Size of the generated data: 1 is about one million tracking events.
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    /// Where to put the data and the tables: a directory (which also gets the
    /// pipeline's files) or a store URL (`s3://bucket/prefix`…).
    #[arg(long, default_value = "strata-demo", value_name = "PATH_OR_URL")]
    pub warehouse: String,
}

/// Runs the demo end to end.
pub(crate) async fn run(args: DemoArgs, out: &mut impl Write) -> Result<(), CliError> {
    let warehouse = crate::warehouse::open(&args.warehouse).await?;
    // The pipeline's files go beside the tables on a local disk, and in a scratch
    // directory when the warehouse is in a store.
    let pipeline_dir = match warehouse.local_dir() {
        Some(dir) => dir.join("pipeline"),
        None => std::env::temp_dir().join(format!("strata-demo-pipeline-{}", std::process::id())),
    };
    std::fs::create_dir_all(&pipeline_dir).map_err(|source| CliError::Write {
        path: pipeline_dir.clone(),
        source,
    })?;
    for (name, text) in PIPELINE {
        let path = pipeline_dir.join(name);
        std::fs::write(&path, text).map_err(|source| CliError::Write { path, source })?;
    }
    let landing = warehouse.location().child("landing");
    let manifest = landing.child("manifest.json");
    let generated = warehouse.store().head(manifest.path()).await.is_ok();
    if !generated {
        writeln!(
            out,
            "1/3 generating recruitment data (scale {}) …",
            args.scale
        )?;
        crate::generate::run(
            GenArgs {
                scale: args.scale,
                out: args.warehouse.clone(),
                seed: 42,
                no_bad_data: false,
            },
            &mut std::io::sink(),
        )
        .await?;
    } else {
        let (name, events) = deliver(&warehouse, &landing, args.scale).await?;
        writeln!(
            out,
            "1/3 delivering {events} new tracking events to {} ({name}): this run refreshes only what they change",
            landing.display()
        )?;
    }
    writeln!(
        out,
        "2/3 running the pipeline in {} …",
        pipeline_dir.display()
    )?;
    let run = crate::run::run(
        RunArgs {
            pipeline: vec![pipeline_dir.clone()],
            build: BuildArgs {
                warehouse: args.warehouse.clone(),
                select: Vec::new(),
                full_refresh: false,
                strict: false,
                continuous: false,
                interval: std::time::Duration::from_secs(10),
                retention: strata_storage::maintenance::DEFAULT_RETENTION,
            },
            scheduler: None,
            credentials: crate::credentials::CredentialsArgs::default(),
            schedule: false,
            schedules: None,
            openlineage: None,
            backfill: false,
            from: None,
            to: None,
        },
        out,
    )
    .await;
    run?;
    writeln!(out, "3/3 the best candidates for three open jobs:")?;
    let best = best_candidates(&warehouse).await?;
    writeln!(out, "{best}")?;
    match warehouse.local_dir() {
        Some(_) => writeln!(
            out,
            "tables are under {warehouse}; run `strata check {}` to see the pipeline",
            pipeline_dir.display()
        )?,
        None => {
            let _ = std::fs::remove_dir_all(&pipeline_dir);
            writeln!(
                out,
                "tables are under {warehouse}; run `strata check examples/recruitment --warehouse {warehouse}` to see the pipeline"
            )?
        }
    }
    Ok(())
}

/// Drops the next delivery of tracking events (1 % of the generated ones) into the
/// landing zone, as an app would between two runs; returns its file's name and rows.
async fn deliver(
    warehouse: &Warehouse,
    landing: &StoreUrl,
    scale: f64,
) -> Result<(String, u64), CliError> {
    let events = landing.child("events");
    let earlier = warehouse
        .store()
        .list_with_delimiter(Some(events.path()))
        .await
        .map_err(|error| strata_storage::StorageError::store(&events.display(), &error))?
        .objects
        .iter()
        .filter(|file| {
            file.location
                .filename()
                .is_some_and(strata_gen::is_delivery_file)
        })
        .count();
    let number = u32::try_from(earlier + 1).unwrap_or(u32::MAX);
    let local = match warehouse.local_dir() {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("strata-demo-delivery-{}", std::process::id())),
    };
    let manifest = strata_gen::delivery(
        &Options {
            out: local.clone(),
            scale,
            seed: 42,
            bad_data: true,
        },
        number,
    )?;
    if warehouse.local_dir().is_none() {
        let uploaded = upload_dir(&local.join("landing"), landing).await;
        let _ = std::fs::remove_dir_all(&local);
        uploaded?;
    }
    Ok((strata_gen::delivery_file(number), manifest.events))
}

async fn best_candidates(warehouse: &Warehouse) -> Result<String, CliError> {
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), StoreRegistry::runtime());
    strata_engine::compile::register_layers(&ctx)?;
    for (layer, name) in [
        (Layer::Enriched, "jobs"),
        (Layer::Enriched, "candidates"),
        (Layer::Ranked, "candidates_per_job"),
    ] {
        let table = TableName {
            layer,
            name: name.to_owned(),
        };
        let delta = delta_publish::open(&warehouse.table(&table)).await?;
        delta_publish::register(&ctx, &table.to_string(), &delta).await?;
    }
    let sql = "SELECT j.job_id, j.title AS job, j.city, r.pos, c.name AS candidate, c.title, round(r.score, 3) AS score \
               FROM ranked.candidates_per_job r \
               JOIN enriched.jobs j ON j.job_id = r.job_id \
               JOIN enriched.candidates c ON c.candidate_id = r.candidate_id AND c.is_current \
               WHERE r.pos <= 3 AND r.job_id IN (SELECT DISTINCT job_id FROM ranked.candidates_per_job ORDER BY job_id LIMIT 3) \
               ORDER BY j.job_id, r.pos";
    let batches = ctx.sql(sql).await?.collect().await?;
    pretty_format_batches(&batches)
        .map(|table| table.to_string())
        .map_err(|source| CliError::Format {
            format: "table",
            source,
        })
}
