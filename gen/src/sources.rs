//! Writes each landing source in the format its app delivers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use flate2::Compression;
use flate2::write::GzEncoder;
use parquet::arrow::ArrowWriter;

use crate::calendar::{END, date, timestamp};
use crate::rng::Rng;
use crate::vocabulary::{
    CAMPAIGNS, CITIES, COMPANIES, EVENT_KINDS, FIRST_NAMES, KEYWORDS, LAST_NAMES, PUBLISHERS,
    SKILLS, TIERS, TITLES, messy,
};
use crate::{GenError, Manifest, Options, bad_data};

const EVENT_DAYS: i64 = 14;
const CANDIDATES_PER_FILE: u64 = 25_000;
const DAY: i64 = 86_400;

/// Writes every source under `<out>/landing/` and the manifest; returns what was written.
pub fn generate(options: &Options) -> Result<Manifest, GenError> {
    if !(options.scale > 0.0 && options.scale.is_finite()) {
        return Err(GenError::Invalid(format!(
            "scale must be a positive number, got {}",
            options.scale
        )));
    }
    let landing = options.out.join("landing");
    let count = |per_scale: f64| ((per_scale * options.scale).round() as u64).max(1);
    let mut manifest = Manifest::default();
    let jobs = count(2_000.0);
    let candidates = count(50_000.0);
    write_jobs(&landing, options, jobs, &mut manifest)?;
    write_candidates(&landing, options, candidates, &mut manifest)?;
    write_searches(&landing, options, count(20_000.0), jobs, &mut manifest)?;
    write_events(
        &landing,
        options,
        count(1_000_000.0),
        jobs,
        candidates,
        &mut manifest,
    )?;
    let path = landing.join("manifest.json");
    std::fs::write(&path, manifest.to_json()).map_err(|source| GenError::io(&path, source))?;
    Ok(manifest)
}

/// The first event id of delivery `number`: far above every id `generate` writes.
const DELIVERY_IDS: u64 = 100_000_000;

/// The name of delivery `number`'s file in `landing/events/`.
pub fn delivery_file(number: u32) -> String {
    format!("{DELIVERY_PREFIX}{number:03}.csv.gz")
}

/// Whether a file of `landing/events/` is a delivery's.
pub fn is_delivery_file(name: &str) -> bool {
    name.starts_with(DELIVERY_PREFIX)
}

const DELIVERY_PREFIX: &str = "events-delivery-";

/// A later delivery of tracking events, as an app drops one: 1 % of the events
/// [`generate`] wrote at the same scale, on the last day, in one new gzip CSV file
/// (`landing/events/events-delivery-<number>.csv.gz`) with ids of their own.
pub fn delivery(options: &Options, number: u32) -> Result<Manifest, GenError> {
    if !(options.scale > 0.0 && options.scale.is_finite()) {
        return Err(GenError::Invalid(format!(
            "scale must be a positive number, got {}",
            options.scale
        )));
    }
    let count = |per_scale: f64| ((per_scale * options.scale).round() as u64).max(1);
    let (jobs, candidates, events) = (count(2_000.0), count(50_000.0), count(10_000.0));
    let mut manifest = Manifest::default();
    let mut rng = Rng::new(options.seed, 100 + u64::from(number));
    let total_weight: u64 = EVENT_KINDS.iter().map(|(_, weight)| weight).sum();
    let path = options
        .out
        .join("landing/events")
        .join(delivery_file(number));
    let mut file = GzText::create(path, EVENT_HEADER)?;
    let first = DELIVERY_IDS * u64::from(number);
    for id in first..first + events {
        let line = event_line(
            &mut rng,
            id,
            END - DAY,
            jobs,
            candidates,
            total_weight,
            options.bad_data,
            &mut manifest,
        );
        file.line(&line)?;
    }
    file.finish(&mut manifest)?;
    manifest.events = events;
    Ok(manifest)
}

/// A gzip-compressed text file; gzip headers carry no timestamp, so output is repeatable.
struct GzText {
    path: PathBuf,
    encoder: GzEncoder<BufWriter<File>>,
}

impl GzText {
    fn create(path: PathBuf, header: &str) -> Result<Self, GenError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| GenError::io(parent, source))?;
        }
        let file = File::create(&path).map_err(|source| GenError::io(&path, source))?;
        let mut text = GzText {
            encoder: GzEncoder::new(BufWriter::new(file), Compression::new(6)),
            path,
        };
        text.line(header)?;
        Ok(text)
    }

    fn line(&mut self, line: &str) -> Result<(), GenError> {
        writeln!(self.encoder, "{line}").map_err(|source| GenError::io(&self.path, source))
    }

    fn finish(self, manifest: &mut Manifest) -> Result<(), GenError> {
        let mut writer = self
            .encoder
            .finish()
            .map_err(|source| GenError::io(&self.path, source))?;
        writer
            .flush()
            .map_err(|source| GenError::io(&self.path, source))?;
        record(&self.path, manifest)
    }
}

fn record(path: &Path, manifest: &mut Manifest) -> Result<(), GenError> {
    let bytes = std::fs::metadata(path)
        .map_err(|source| GenError::io(path, source))?
        .len();
    manifest.files += 1;
    manifest.bytes += bytes;
    Ok(())
}

fn write_jobs(
    landing: &Path,
    options: &Options,
    jobs: u64,
    manifest: &mut Manifest,
) -> Result<(), GenError> {
    let mut rng = Rng::new(options.seed, 1);
    let mut skills = ListBuilder::new(StringBuilder::new());
    let (mut ids, mut companies, mut titles, mut cities, mut countries) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut lats, mut lons, mut posted, mut statuses, mut descriptions) =
        (vec![], vec![], vec![], vec![], vec![]);
    for job in 1..=jobs {
        let city = rng.pick(CITIES);
        let title = *rng.pick(TITLES);
        let wanted = 3 + rng.below(3) as usize;
        let required = rng.sample(SKILLS, wanted);
        for skill in &required {
            skills.values().append_value(**skill);
        }
        skills.append(true);
        let open = rng.chance(0.85);
        manifest.open_jobs += u64::from(open);
        let keywords: Vec<&str> = rng.sample(KEYWORDS, 4).into_iter().copied().collect();
        descriptions.push(format!(
            "{title} at {company} in {city}: {skills}, {keywords}.",
            company = COMPANIES[(job as usize) % COMPANIES.len()],
            city = city.name,
            skills = required.iter().map(|s| **s).collect::<Vec<_>>().join(", "),
            keywords = keywords.join(" "),
        ));
        ids.push(job as i64);
        companies.push(*rng.pick(COMPANIES));
        titles.push(title);
        cities.push(city.name);
        countries.push(city.country);
        lats.push(city.lat + (rng.unit() - 0.5) * 0.2);
        lons.push(city.lon + (rng.unit() - 0.5) * 0.2);
        posted.push((END - rng.below(60) as i64 * DAY - rng.below(DAY as u64) as i64) * 1_000_000);
        statuses.push(if open { "open" } else { "closed" });
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("job_id", DataType::Int64, false),
        Field::new("company", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new(
            "required_skills",
            DataType::new_list(DataType::Utf8, true),
            true,
        ),
        Field::new("city", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new(
            "posted_at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("status", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(companies)),
        Arc::new(StringArray::from(titles)),
        Arc::new(skills.finish()),
        Arc::new(StringArray::from(cities)),
        Arc::new(StringArray::from(countries)),
        Arc::new(Float64Array::from(lats)),
        Arc::new(Float64Array::from(lons)),
        Arc::new(TimestampMicrosecondArray::from(posted)),
        Arc::new(StringArray::from(statuses)),
        Arc::new(StringArray::from(descriptions)),
    ];
    let path = landing.join("jobs/jobs-0000.parquet");
    let encode = |source: Box<dyn std::error::Error + Send + Sync>| GenError::Encode {
        path: path.clone(),
        source,
    };
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| encode(e.into()))?;
    std::fs::create_dir_all(landing.join("jobs")).map_err(|source| GenError::io(&path, source))?;
    let file = File::create(&path).map_err(|source| GenError::io(&path, source))?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| encode(e.into()))?;
    writer.write(&batch).map_err(|e| encode(e.into()))?;
    writer.close().map_err(|e| encode(e.into()))?;
    manifest.jobs = jobs;
    record(&path, manifest)
}

const CANDIDATE_HEADER: &str = "candidate_id,name,title,skills,city,country,lat,lon,years_experience,last_active,updated_at,email";

/// One candidate row; `version` > 0 is a later correction of the same candidate.
fn candidate_line(rng: &mut Rng, id: u64, version: i64, bad_coordinates: bool) -> String {
    let city = rng.pick(CITIES);
    let count = 3 + rng.below(6) as usize;
    let skills: Vec<String> = rng
        .sample(SKILLS, count)
        .into_iter()
        .map(|skill| messy(skill, rng.below(8)))
        .collect();
    let lat = if bad_coordinates {
        123.4
    } else {
        city.lat + (rng.unit() - 0.5) * 0.3
    };
    let lon = city.lon + (rng.unit() - 0.5) * 0.3;
    let last_active = END - rng.below(180) as i64 * DAY - rng.below(DAY as u64) as i64;
    let updated = END - (40 - version * 10) * DAY + (id % DAY as u64) as i64;
    // Drawn in the order they always were, so the same seed gives the same candidates.
    let (first, last, title) = (
        rng.pick(FIRST_NAMES),
        rng.pick(LAST_NAMES),
        rng.pick(TITLES),
    );
    let years = rng.below(25);
    // The e-mail comes from the name, so it takes nothing from the random stream.
    let email = format!("{first}.{last}.{id}@example.com")
        .to_lowercase()
        .replace(' ', "");
    format!(
        "c{id:07},{first} {last},{title},{},{},{},{lat:.5},{lon:.5},{years},{},{},{email}",
        skills.join("|"),
        city.name,
        city.country,
        timestamp(last_active),
        timestamp(updated),
    )
}

fn write_candidates(
    landing: &Path,
    options: &Options,
    candidates: u64,
    manifest: &mut Manifest,
) -> Result<(), GenError> {
    let mut rng = Rng::new(options.seed, 2);
    let dir = landing.join("candidates");
    let mut file = None;
    for id in 1..=candidates {
        if (id - 1) % CANDIDATES_PER_FILE == 0 {
            if let Some(done) = file.take() {
                GzText::finish(done, manifest)?;
            }
            let name = format!("candidates-{:04}.csv.gz", (id - 1) / CANDIDATES_PER_FILE);
            file = Some(GzText::create(dir.join(name), CANDIDATE_HEADER)?);
        }
        let bad = options.bad_data && rng.chance(bad_data::CANDIDATES_BAD_COORDINATES);
        manifest.candidates_bad_coordinates += u64::from(bad);
        let line = candidate_line(&mut rng, id, 0, bad);
        if let Some(file) = file.as_mut() {
            file.line(&line)?;
        }
    }
    if let Some(done) = file.take() {
        GzText::finish(done, manifest)?;
    }
    // A later delivery corrects one candidate in ten: new skills, city or title.
    let mut updates = GzText::create(dir.join("candidates-updates-0000.csv.gz"), CANDIDATE_HEADER)?;
    for id in (1..=candidates).filter(|id| id % 10 == 3) {
        let line = candidate_line(&mut rng, id, 1, false);
        updates.line(&line)?;
        manifest.candidate_updates += 1;
    }
    updates.finish(manifest)?;
    manifest.candidates = candidates;
    Ok(())
}

fn write_searches(
    landing: &Path,
    options: &Options,
    searches: u64,
    jobs: u64,
    manifest: &mut Manifest,
) -> Result<(), GenError> {
    let mut rng = Rng::new(options.seed, 3);
    let path = landing.join("searches/searches-0000.json");
    std::fs::create_dir_all(landing.join("searches"))
        .map_err(|source| GenError::io(&path, source))?;
    let file = File::create(&path).map_err(|source| GenError::io(&path, source))?;
    let mut out = BufWriter::new(file);
    for search in 1..=searches {
        let count = 1 + rng.below(3) as usize;
        let keywords: Vec<&str> = rng.sample(KEYWORDS, count).into_iter().copied().collect();
        let ts = END - rng.below(EVENT_DAYS as u64 * DAY as u64) as i64;
        writeln!(
            out,
            r#"{{"search_id":{search},"recruiter_id":"r{:04}","tier":"{}","keywords":"{}","job_id":{},"ts":"{}"}}"#,
            rng.below(500),
            rng.pick(TIERS),
            keywords.join(" "),
            1 + rng.below(jobs),
            timestamp(ts)
        )
        .map_err(|source| GenError::io(&path, source))?;
    }
    out.flush().map_err(|source| GenError::io(&path, source))?;
    manifest.searches = searches;
    record(&path, manifest)
}

const EVENT_HEADER: &str = "event_id,ts,job_id,candidate_id,kind,publisher,campaign";

fn write_events(
    landing: &Path,
    options: &Options,
    events: u64,
    jobs: u64,
    candidates: u64,
    manifest: &mut Manifest,
) -> Result<(), GenError> {
    let mut rng = Rng::new(options.seed, 4);
    let dir = landing.join("events");
    let total_weight: u64 = EVENT_KINDS.iter().map(|(_, weight)| weight).sum();
    let per_day = events.div_ceil(EVENT_DAYS as u64);
    let mut next_id = 1u64;
    for day in 0..EVENT_DAYS {
        let start = END - (EVENT_DAYS - day) * DAY;
        let mut file = GzText::create(
            dir.join(format!("events-{}.csv.gz", date(start / DAY))),
            EVENT_HEADER,
        )?;
        while next_id <= events.min(per_day * (day as u64 + 1)) {
            let line = event_line(
                &mut rng,
                next_id,
                start,
                jobs,
                candidates,
                total_weight,
                options.bad_data,
                manifest,
            );
            file.line(&line)?;
            next_id += 1;
        }
        file.finish(manifest)?;
    }
    manifest.events = events;
    if options.bad_data {
        // One delivery cut off in transit: a gzip stream that ends mid-block.
        let name = format!("events-{}-partial.csv.gz", date(END / DAY));
        let path = dir.join(&name);
        let mut complete = GzText::create(path.clone(), EVENT_HEADER)?;
        let mut discard = Manifest::default();
        for id in 0..2_000 {
            let line = event_line(
                &mut rng,
                900_000_000 + id,
                END,
                jobs,
                candidates,
                total_weight,
                false,
                &mut discard,
            );
            complete.line(&line)?;
        }
        complete.finish(&mut discard)?;
        let bytes = std::fs::read(&path).map_err(|source| GenError::io(&path, source))?;
        std::fs::write(&path, &bytes[..bytes.len() / 2])
            .map_err(|source| GenError::io(&path, source))?;
        record(&path, manifest)?;
        manifest
            .malformed_files
            .push(format!("landing/events/{name}"));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn event_line(
    rng: &mut Rng,
    id: u64,
    day_start: i64,
    jobs: u64,
    candidates: u64,
    total_weight: u64,
    bad_data: bool,
    manifest: &mut Manifest,
) -> String {
    let mut pick = rng.below(total_weight);
    let kind = EVENT_KINDS
        .iter()
        .find(|(_, weight)| {
            let hit = pick < *weight;
            pick = pick.saturating_sub(*weight);
            hit
        })
        .map_or("click", |(kind, _)| *kind);
    let mut ts = day_start + rng.below(DAY as u64) as i64;
    let mut job = (1 + rng.below(jobs)).to_string();
    if bad_data && rng.chance(bad_data::EVENTS_MISSING_JOB) {
        job.clear();
        manifest.events_missing_job += 1;
    } else if bad_data && rng.chance(bad_data::EVENTS_TOO_OLD) {
        ts -= 17 * 365 * DAY;
        manifest.events_too_old += 1;
    } else if bad_data && rng.chance(bad_data::EVENTS_UNPARSABLE) {
        manifest.events_unparsable += 1;
        if rng.chance(0.5) {
            // An app that writes "n/a" where a job id goes.
            job = "n/a".to_owned();
        } else {
            // A row cut short: no campaign field.
            return format!(
                "e{id:09},{},{job},c{:07},{kind},{}",
                timestamp(ts),
                1 + rng.below(candidates),
                rng.pick(PUBLISHERS)
            );
        }
    }
    format!(
        "e{id:09},{},{job},c{:07},{kind},{},{}",
        timestamp(ts),
        1 + rng.below(candidates),
        rng.pick(PUBLISHERS),
        rng.pick(CAMPAIGNS)
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_delivery_is_one_percent_of_the_events_with_ids_of_its_own_and_repeatable() {
        let out = std::env::temp_dir().join(format!("strata-gen-delivery-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let options = Options {
            out: out.clone(),
            scale: 0.01,
            seed: 7,
            bad_data: false,
        };
        let manifest = delivery(&options, 2).unwrap();
        assert_eq!(manifest.events, 100);
        let path = out.join("landing/events").join(delivery_file(2));
        let first = lines(&path);
        assert_eq!(first[0], EVENT_HEADER);
        assert_eq!(first.len(), 101);
        let ids: Vec<u64> = first[1..]
            .iter()
            .map(|line| line.split(',').next().unwrap()[1..].parse().unwrap())
            .collect();
        assert!(ids.iter().all(|id| *id >= 2 * DELIVERY_IDS), "{ids:?}");
        assert!(
            is_delivery_file(&delivery_file(2)) && !is_delivery_file("events-2026-11-21.csv.gz")
        );
        delivery(&options, 2).unwrap();
        assert_eq!(lines(&path), first, "the same options give the same bytes");
        std::fs::remove_dir_all(&out).unwrap();
    }
}
