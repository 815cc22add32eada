//! Encrypted deliveries: files encrypted by the real `gpg` and `age` tools (public-key,
//! passphrase, armored, gzip inside or not) are decrypted as they are read; a file no
//! key opens, one altered or one cut short is rejected whole and nothing of it lands;
//! keys missing or unreadable fail the run and leave the files for the next; no key or
//! passphrase is written anywhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::cluster::Cluster;
use crate::support::{raw_committed, stderr, stdout, strata, table_report, workdir};

const PASSPHRASE: &str = "correct horse battery staple";
const PASSPHRASE_ENV: &str = "STRATA_TEST_LANDING_PASSPHRASE";

/// Keys made with the real tools in a scratch GnuPG home.
struct Keys {
    gnupg: PathBuf,
    /// The landing key's secret, armored, as a Kubernetes Secret would mount it.
    landing: PathBuf,
    /// age identities, as `age-keygen` writes them.
    age: PathBuf,
    age_recipient: String,
}

fn gpg(keys: &Keys, args: &[&str]) {
    let ran = Command::new("gpg")
        .env("GNUPGHOME", &keys.gnupg)
        .args(["--batch", "--quiet", "--yes", "--trust-model", "always"])
        .args(args)
        .output()
        .expect("gpg runs (Debian's gnupg)");
    assert!(ran.status.success(), "gpg {args:?}: {}", stderr(&ran));
}

/// Stops the scratch home's gpg-agent, which would outlive the test (and find its
/// home gone when the next run of the test starts one there).
fn stop_agent(keys: &Keys) {
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &keys.gnupg)
        .args(["--kill", "gpg-agent"])
        .status();
}

fn make_keys(dir: &Path) -> Keys {
    let gnupg = dir.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    let keys = Keys {
        landing: dir.join("keys/landing.asc"),
        age: dir.join("keys/age.key"),
        gnupg,
        age_recipient: String::new(),
    };
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    for uid in ["landing@strata.invalid", "someone-else@strata.invalid"] {
        let no_passphrase = ["--pinentry-mode", "loopback", "--passphrase", ""];
        gpg(
            &keys,
            &[
                &no_passphrase[..],
                &["--quick-gen-key", uid, "rsa2048", "cert", "never"],
            ]
            .concat(),
        );
        let listed = Command::new("gpg")
            .env("GNUPGHOME", &keys.gnupg)
            .args(["--list-keys", "--with-colons", uid])
            .output()
            .unwrap();
        let fingerprint = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .map(|rest| rest.trim_matches(':').to_owned())
            .unwrap();
        gpg(
            &keys,
            &[
                &no_passphrase[..],
                &["--quick-add-key", &fingerprint, "rsa2048", "encr", "never"],
            ]
            .concat(),
        );
    }
    gpg(
        &keys,
        &[
            "--armor",
            "--output",
            keys.landing.to_str().unwrap(),
            "--export-secret-keys",
            "landing@strata.invalid",
        ],
    );
    let made = Command::new("age-keygen")
        .args(["-o", keys.age.to_str().unwrap()])
        .stderr(Stdio::null())
        .status()
        .expect("age-keygen runs (Debian's age)");
    assert!(made.success());
    let recipient = Command::new("age-keygen")
        .args(["-y", keys.age.to_str().unwrap()])
        .output()
        .unwrap();
    Keys {
        age_recipient: String::from_utf8(recipient.stdout)
            .unwrap()
            .trim()
            .to_owned(),
        ..keys
    }
}

/// A CSV delivery of candidates `ids`, each row naming the file it came from.
fn csv(ids: std::ops::Range<u64>, tag: &str) -> Vec<u8> {
    let mut text = String::from("id,name,email\n");
    for id in ids {
        text.push_str(&format!("{id},\"{tag} {id}, Jr.\",c{id}@example.com\n"));
    }
    text.into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `plaintext` encrypted by `gpg` with `how` (recipients or `--symmetric`), into `to`.
fn gpg_encrypt(keys: &Keys, plaintext: &[u8], to: &Path, how: &[&str]) {
    let clear = to.with_extension("clear");
    std::fs::write(&clear, plaintext).unwrap();
    gpg(
        keys,
        &[
            how,
            &["--output", to.to_str().unwrap(), clear.to_str().unwrap()],
        ]
        .concat(),
    );
    std::fs::remove_file(clear).unwrap();
}

/// `plaintext` encrypted by `age` with `how` (`-r`, `-a`), into `to`.
fn age_encrypt(plaintext: &[u8], to: &Path, how: &[&str]) {
    let mut age = Command::new("age")
        .args(how)
        .args(["-o", to.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .expect("age runs (Debian's age)");
    age.stdin.take().unwrap().write_all(plaintext).unwrap();
    assert!(age.wait().unwrap().success());
}

/// `plaintext` encrypted by `age -p`, which asks for its passphrase on a terminal only:
/// `script` gives it one.
fn age_encrypt_with_passphrase(plaintext: &[u8], to: &Path) {
    let clear = to.with_extension("clear");
    std::fs::write(&clear, plaintext).unwrap();
    let mut script = Command::new("script")
        .args([
            "-qec",
            &format!("age -p -o {} {}", to.display(), clear.display()),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    script
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSPHRASE}\n{PASSPHRASE}\n").as_bytes())
        .unwrap();
    assert!(script.wait().unwrap().success());
    std::fs::remove_file(clear).unwrap();
}

/// Flips one byte at `at` (a share of the length) of a file, as a bad copy would.
fn tamper(path: &Path, at: f64) {
    let mut bytes = std::fs::read(path).unwrap();
    let index = (bytes.len() as f64 * at) as usize;
    bytes[index] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, keep: f64) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
}

/// Where the pipeline says the passphrase is: an environment variable, or a file (as
/// executors of a cluster started without the variable read it).
#[derive(Clone, Copy)]
enum Passphrase {
    Env,
    File,
}

fn pipeline(dir: &Path, keys: &Keys, landing_key: &Path, passphrase: Passphrase) -> PathBuf {
    let passphrase = match passphrase {
        Passphrase::Env => format!("'decrypt.passphrase_env' '{PASSPHRASE_ENV}'"),
        Passphrase::File => {
            let file = dir.join("keys/passphrase");
            std::fs::write(&file, format!("{PASSPHRASE}\n")).unwrap();
            format!("'decrypt.passphrase_file' '{}'", file.display())
        }
    };
    let path = dir.join("pipeline.sql");
    std::fs::write(
        &path,
        format!(
            "CREATE EXTERNAL TABLE landing.candidates (id BIGINT NOT NULL, name VARCHAR, email VARCHAR)
STORED AS CSV LOCATION 'landing/candidates/'
OPTIONS ('format.has_header' 'true', 'decrypt.key_file' '{}', {passphrase});

CREATE EXTERNAL TABLE landing.zipped (id BIGINT NOT NULL, name VARCHAR, email VARCHAR)
STORED AS CSV LOCATION 'landing/zipped/'
OPTIONS ('format.has_header' 'true', 'format.compression' 'gzip', 'decrypt.key_file' '{}');

CREATE TABLE raw.candidates AS SELECT * FROM landing.candidates;
CREATE TABLE raw.zipped AS SELECT * FROM landing.zipped;
",
            landing_key.display(),
            keys.age.display()
        ),
    )
    .unwrap();
    path
}

fn run(pipeline: &Path, warehouse: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "run",
            pipeline.to_str().unwrap(),
            "--warehouse",
            warehouse.to_str().unwrap(),
        ])
        .args(extra)
        .env(PASSPHRASE_ENV, PASSPHRASE)
        .env_remove("STRATA_WAREHOUSE")
        .output()
        .unwrap()
}

fn ids(warehouse: &Path, table: &str) -> Vec<u64> {
    let found = raw_committed(&warehouse.join("raw").join(table));
    let mut ids: Vec<u64> = found["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|window| window == needle)
        {
            found.push(path);
        }
    }
    found
}

/// Delivers good and damaged encrypted files to both sources, and returns the keys.
fn deliver(dir: &Path) -> Keys {
    let keys = make_keys(dir);
    let plain = dir.join("landing/candidates");
    let zipped = dir.join("landing/zipped");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&zipped).unwrap();
    let to_landing = ["--encrypt", "--recipient", "landing@strata.invalid"];
    // Good deliveries: public-key (binary, armored), symmetric, age passphrase, clear.
    gpg_encrypt(
        &keys,
        &csv(0..100, "binary"),
        &plain.join("a.csv.gpg"),
        &to_landing,
    );
    gpg_encrypt(
        &keys,
        &csv(100..200, "armored"),
        &plain.join("b.csv.pgp"),
        &[&["--armor"], &to_landing[..]].concat(),
    );
    gpg_encrypt(
        &keys,
        &csv(200..300, "symmetric"),
        &plain.join("c.csv.gpg"),
        &[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            PASSPHRASE,
            "--symmetric",
        ],
    );
    age_encrypt_with_passphrase(&csv(300..400, "age passphrase"), &plain.join("d.csv.age"));
    std::fs::write(plain.join("e.csv"), csv(400..450, "clear")).unwrap();
    // Bad ones: for another key; altered far into a large file, after many rows that
    // decrypt and parse well; cut short.
    gpg_encrypt(
        &keys,
        &csv(1000..1100, "someone else's"),
        &plain.join("f.csv.gpg"),
        &["--encrypt", "--recipient", "someone-else@strata.invalid"],
    );
    gpg_encrypt(
        &keys,
        &csv(2000..12000, "TAMPERED"),
        &plain.join("g.csv.gpg"),
        &[&["--compress-algo", "none"], &to_landing[..]].concat(),
    );
    tamper(&plain.join("g.csv.gpg"), 0.9);
    gpg_encrypt(
        &keys,
        &csv(3000..4000, "CUT SHORT"),
        &plain.join("h.csv.gpg"),
        &to_landing,
    );
    truncate(&plain.join("h.csv.gpg"), 0.8);

    // age, gzip inside: a good one (armored), one altered far past its first chunks.
    age_encrypt(
        &gzip(&csv(5000..5100, "age")),
        &zipped.join("a.csv.gz.age"),
        &["-a", "-r", &keys.age_recipient],
    );
    // Rows first, then a megabyte of random letters gzip cannot shrink (one bad row),
    // so the damage is chunks after the rows.
    let mut large = csv(6000..16000, "AGE TAMPERED");
    let mut state = 7_u64;
    large.extend((0..1_000_000).map(|_| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        b'a' + (state >> 59) as u8 % 26
    }));
    large.push(b'\n');
    age_encrypt(
        &gzip(&large),
        &zipped.join("b.csv.gz.age"),
        &["-r", &keys.age_recipient],
    );
    tamper(&zipped.join("b.csv.gz.age"), 0.6);
    // A gpg file where the source has age identities only.
    gpg_encrypt(
        &keys,
        &gzip(&csv(7000..7010, "pgp")),
        &zipped.join("c.csv.gz.gpg"),
        &to_landing,
    );
    stop_agent(&keys);
    keys
}

/// Checks what a run of the deliveries committed, rejected and wrote down.
fn check(dir: &Path, keys: &Keys, ran: &std::process::Output) {
    let out = stdout(ran);
    assert!(ran.status.success(), "{out}\n{}", stderr(ran));

    assert_eq!(ids(dir, "candidates"), (0..450).collect::<Vec<_>>());
    assert_eq!(ids(dir, "zipped"), (5000..5100).collect::<Vec<_>>());
    let report = table_report(&out, "raw.candidates");
    assert_eq!(
        (
            report["rows_written"].as_u64(),
            report["files_ingested"].as_u64(),
            report["files_rejected"].as_u64()
        ),
        (Some(450), Some(5), Some(3)),
        "{report}"
    );
    let reasons: Vec<(String, String)> = report["rejected_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            (
                file["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                file["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (file, expected) in [
        (
            "f.csv.gpg",
            "none of the source's OpenPGP keys or passphrase opens it",
        ),
        ("g.csv.gpg", "the integrity check failed"),
        ("h.csv.gpg", "cannot be decrypted"),
    ] {
        assert!(
            reasons
                .iter()
                .any(|(path, reason)| path == file && reason.contains(expected)),
            "{file}: {reasons:#?}"
        );
    }
    let zipped_report = table_report(&out, "raw.zipped");
    assert_eq!(zipped_report["files_rejected"], 2, "{zipped_report}");
    let zipped_reasons = zipped_report["rejected_files"].to_string();
    assert!(
        zipped_reasons.contains("the integrity check failed"),
        "{zipped_reasons}"
    );
    assert!(
        zipped_reasons.contains("encrypted to an OpenPGP key, and the source names none"),
        "{zipped_reasons}"
    );

    // Nothing of a damaged file was kept, and no key or passphrase was written.
    let warehouse_tables = [dir.join("raw"), dir.join("_strata")];
    let secret_line = std::fs::read_to_string(&keys.landing)
        .unwrap()
        .lines()
        .nth(3)
        .unwrap()
        .to_owned();
    for needle in ["TAMPERED", "CUT SHORT", PASSPHRASE, secret_line.as_str()] {
        for tables in &warehouse_tables {
            assert_eq!(
                files_holding(tables, needle.as_bytes()),
                Vec::<PathBuf>::new(),
                "{needle}"
            );
        }
        assert!(
            !out.contains(needle) && !stderr(ran).contains(needle),
            "{needle}"
        );
    }
}

#[test]
fn gpg_and_age_deliveries_are_ingested_and_damaged_ones_rejected_whole() {
    let dir = workdir("encrypted-deliveries");
    let keys = deliver(&dir);
    let pipeline = pipeline(&dir, &keys, &keys.landing, Passphrase::Env);
    check(&dir, &keys, &run(&pipeline, &dir, &[]));

    // A second run reads nothing again: every file was ingested or rejected.
    let again = run(&pipeline, &dir, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        table_report(&stdout(&again), "raw.candidates")["rows_read"],
        0
    );
}

#[test]
fn executors_of_a_cluster_decrypt_with_the_keys_the_source_names() {
    let dir = workdir("encrypted-cluster");
    let keys = deliver(&dir);
    let pipeline = pipeline(&dir, &keys, &keys.landing, Passphrase::File);
    let cluster = Cluster::start("encrypted", 2);
    check(
        &dir,
        &keys,
        &run(&pipeline, &dir, &["--scheduler", &cluster.address]),
    );
}

#[test]
fn keys_that_cannot_be_read_fail_the_run_and_leave_the_files_for_the_next() {
    let dir = workdir("encrypted-missing-key");
    let keys = make_keys(&dir);
    let plain = dir.join("landing/candidates");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(dir.join("landing/zipped")).unwrap();
    gpg_encrypt(
        &keys,
        &csv(0..10, "binary"),
        &plain.join("a.csv.gpg"),
        &["--encrypt", "--recipient", "landing@strata.invalid"],
    );
    stop_agent(&keys);

    let missing = dir.join("keys/missing.asc");
    let a_directory = dir.join("keys");
    let not_a_key = dir.join("pipeline.sql");
    for (key, expected) in [
        (&missing, "cannot read the key file"),
        (&a_directory, "cannot read the key file"),
        (&not_a_key, "neither an OpenPGP secret key"),
    ] {
        let pipeline = pipeline(&dir, &keys, key, Passphrase::Env);
        let ran = run(&pipeline, &dir, &[]);
        let said = format!("{}{}", stdout(&ran), stderr(&ran));
        assert!(!ran.status.success(), "{said}");
        assert!(
            said.contains(&format!("'decrypt.key_file' {}", key.display()))
                && said.contains(expected),
            "{said}"
        );
        assert!(plain.join("a.csv.gpg").exists());
    }
    let unset = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "run",
            pipeline(&dir, &keys, &keys.landing, Passphrase::Env)
                .to_str()
                .unwrap(),
            "--warehouse",
            dir.to_str().unwrap(),
        ])
        .env_remove(PASSPHRASE_ENV)
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&unset), stderr(&unset));
    assert!(
        !unset.status.success()
            && said.contains(&format!("'decrypt.passphrase_env' {PASSPHRASE_ENV}")),
        "{said}"
    );

    let fixed = run(
        &pipeline(&dir, &keys, &keys.landing, Passphrase::Env),
        &dir,
        &[],
    );
    assert!(fixed.status.success(), "{}", stderr(&fixed));
    assert_eq!(ids(&dir, "candidates"), (0..10).collect::<Vec<_>>());
}

#[test]
fn decryption_where_strata_cannot_decrypt_is_refused_by_name() {
    let dir = workdir("encrypted-refused");
    std::fs::create_dir_all(dir.join("landing")).unwrap();
    std::fs::write(dir.join("landing/jobs.csv.gpg"), b"not even OpenPGP").unwrap();
    let run_jobs = |definition: &str| {
        let pipeline = dir.join("jobs.sql");
        std::fs::write(
            &pipeline,
            format!("{definition};\nCREATE TABLE raw.jobs AS SELECT * FROM landing.jobs;\n"),
        )
        .unwrap();
        strata(&[
            "run",
            pipeline.to_str().unwrap(),
            "--warehouse",
            dir.to_str().unwrap(),
        ])
    };
    for (definition, expected) in [
        (
            "CREATE EXTERNAL TABLE landing.jobs (id BIGINT) STORED AS PARQUET LOCATION 'landing/' OPTIONS ('decrypt.key_file' '/k')",
            "Strata decrypts CSV and JSON files as it reads them",
        ),
        (
            "CREATE EXTERNAL TABLE landing.jobs STORED AS CSV LOCATION 'landing/' OPTIONS ('decrypt.key_file' '/k')",
            "declare the columns of an encrypted source",
        ),
        (
            "CREATE EXTERNAL TABLE landing.jobs (id BIGINT) STORED AS CSV LOCATION 'landing/' OPTIONS ('decrypt.key_file' '/k', 'decrypt.key_env' 'K')",
            "a source takes one of 'decrypt.key_file' and 'decrypt.key_env'",
        ),
        // Encrypted files where the source names no keys: not its files, with a hint.
        (
            "CREATE EXTERNAL TABLE landing.jobs (id BIGINT) STORED AS CSV LOCATION 'landing/'",
            "the files are encrypted: name the source's keys with OPTIONS ('decrypt.key_file'",
        ),
    ] {
        let ran = run_jobs(definition);
        assert!(!ran.status.success());
        assert!(stderr(&ran).contains(expected), "{}", stderr(&ran));
    }

    // A location that is one encrypted file is read whatever its name: without keys it
    // is rejected whole, and says why.
    let ran = run_jobs(
        "CREATE EXTERNAL TABLE landing.jobs (id BIGINT) STORED AS CSV LOCATION 'landing/jobs.csv.gpg'",
    );
    assert!(ran.status.success(), "{}", stderr(&ran));
    let report = table_report(&stdout(&ran), "raw.jobs");
    assert!(
        report["rejected_files"][0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("an encrypted file, and its source names no key")),
        "{report}"
    );
}
