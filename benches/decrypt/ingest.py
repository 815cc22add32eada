#!/usr/bin/env python3
"""What decrypting deliveries costs raw ingest (issue 30): the same gzip CSV delivery
ingested into a raw table in clear, encrypted by `gpg` (public key), and by `age`
(X25519), each into a fresh warehouse, best of `--runs`; and, for comparison, what
teams do without Strata's decryption: `gpg --decrypt` to disk, then ingest in clear.

    cargo build --release -p strata
    python3 benches/decrypt/ingest.py --strata target/release/strata --rows 2000000

Needs gpg and age-keygen/age (Debian's gnupg and age). Every variant's raw table must
hold the same rows: the script checks the counts before it reports times.
"""

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import tempfile
import time

PIPELINE = """
CREATE EXTERNAL TABLE landing.candidates (
  id BIGINT NOT NULL, name VARCHAR, email VARCHAR, city VARCHAR, skills VARCHAR,
  years DOUBLE, updated TIMESTAMP)
STORED AS CSV LOCATION 'landing/candidates/'
OPTIONS ('format.has_header' 'true', 'format.compression' 'gzip'{decrypt});

CREATE TABLE raw.candidates AS SELECT * FROM landing.candidates;
"""

CITIES = ["Madrid", "Barcelona", "Valencia", "Sevilla", "Zaragoza", "Málaga", "Bilbao"]
SKILLS = ["python", "sql", "rust", "spark", "kafka", "java", "go", "dbt", "airflow"]


def delivery(path, rows):
    """A gzip CSV of candidates, as an export would write it."""
    rng = random.Random(7)
    with gzip.open(path, "wt", compresslevel=6) as out:
        out.write("id,name,email,city,skills,years,updated\n")
        for id in range(rows):
            skills = ";".join(rng.sample(SKILLS, 3))
            out.write(
                f'{id},"Candidate {id}, Jr.",c{id}@example.com,{rng.choice(CITIES)},'
                f"{skills},{rng.random() * 20:.1f},2026-12-0{1 + id % 7}T10:{id % 60:02}:00\n"
            )


def ingest(strata, root, name, landing_file, decrypt, env):
    """Seconds to ingest `landing_file` into a fresh warehouse, and the rows written."""
    warehouse = os.path.join(root, name)
    shutil.rmtree(warehouse, ignore_errors=True)
    landing = os.path.join(warehouse, "landing/candidates")
    os.makedirs(landing)
    os.link(landing_file, os.path.join(landing, os.path.basename(landing_file)))
    pipeline = os.path.join(warehouse, "pipeline.sql")
    with open(pipeline, "w") as f:
        f.write(PIPELINE.format(decrypt=decrypt))
    started = time.monotonic()
    run = subprocess.run(
        [strata, "run", pipeline, "--warehouse", warehouse],
        capture_output=True, text=True, env=env,
    )
    seconds = time.monotonic() - started
    if run.returncode != 0:
        raise SystemExit(f"{name}: strata run failed:\n{run.stdout}\n{run.stderr}")
    path = next(line[len("report: "):] for line in run.stdout.splitlines()
                if line.startswith("report: "))
    with open(path.strip()) as f:
        report = json.load(f)
    table = next(t for t in report["tables"] if t["table"] == "raw.candidates")
    return seconds, table["rows_written"], table["files_rejected"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    strata = os.path.abspath(args.strata)
    root = tempfile.mkdtemp(prefix="strata-decrypt-bench-")
    gnupg = os.path.join(root, "gnupg")
    os.makedirs(gnupg, mode=0o700)
    env = dict(os.environ, GNUPGHOME=gnupg)
    gpg = ["gpg", "--batch", "--quiet", "--yes", "--trust-model", "always"]
    uid = "landing@strata.invalid"
    subprocess.run(gpg + ["--pinentry-mode", "loopback", "--passphrase", "",
                          "--quick-gen-key", uid, "rsa3072", "cert", "never"], check=True, env=env)
    fingerprint = next(
        line.split(":")[9] for line in subprocess.run(
            ["gpg", "--list-keys", "--with-colons", uid], capture_output=True, text=True, env=env,
        ).stdout.splitlines() if line.startswith("fpr:")
    )
    subprocess.run(gpg + ["--pinentry-mode", "loopback", "--passphrase", "",
                          "--quick-add-key", fingerprint, "rsa3072", "encr", "never"], check=True, env=env)
    key = os.path.join(root, "landing.asc")
    subprocess.run(gpg + ["--armor", "--output", key, "--export-secret-keys", uid], check=True, env=env)
    age_key = os.path.join(root, "age.key")
    subprocess.run(["age-keygen", "-o", age_key], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", age_key], check=True, capture_output=True,
                               text=True).stdout.strip()

    clear = os.path.join(root, "candidates.csv.gz")
    delivery(clear, args.rows)
    size = os.path.getsize(clear)
    with gzip.open(clear, "rb") as f:
        plain_size = sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))
    encrypted_gpg = clear + ".gpg"
    subprocess.run(gpg + ["--encrypt", "--recipient", uid, "--output", encrypted_gpg, clear],
                   check=True, env=env)
    encrypted_age = clear + ".age"
    subprocess.run(["age", "-r", recipient, "-o", encrypted_age, clear], check=True)
    print(f"{args.rows:,} rows: {plain_size / 1e6:.1f} MB of CSV, {size / 1e6:.1f} MB gzip, "
          f"{os.path.getsize(encrypted_gpg) / 1e6:.1f} MB gpg, {os.path.getsize(encrypted_age) / 1e6:.1f} MB age")

    def decrypt_then_ingest():
        decrypted = os.path.join(root, "decrypted", "candidates.csv.gz")
        os.makedirs(os.path.dirname(decrypted), exist_ok=True)
        started = time.monotonic()
        subprocess.run(gpg + ["--output", decrypted, "--decrypt", encrypted_gpg], check=True, env=env)
        seconds = time.monotonic() - started
        took, rows, rejected = ingest(strata, root, "gpg-then-clear", decrypted, "", env)
        os.remove(decrypted)
        return seconds + took, rows, rejected

    variants = [
        ("clear", lambda: ingest(strata, root, "clear", clear, "", env)),
        ("gpg", lambda: ingest(strata, root, "gpg", encrypted_gpg, f", 'decrypt.key_file' '{key}'", env)),
        ("age", lambda: ingest(strata, root, "age", encrypted_age, f", 'decrypt.key_file' '{age_key}'", env)),
        ("gpg --decrypt to disk, then clear", decrypt_then_ingest),
    ]
    best = {}
    for run in range(args.runs):
        for name, variant in variants:
            seconds, rows, rejected = variant()
            if rows != args.rows or rejected != 0:
                raise SystemExit(f"{name}: {rows} rows written, {rejected} files rejected")
            best[name] = min(best.get(name, seconds), seconds)
            print(f"run {run + 1} {name}: {seconds:.2f} s", flush=True)
    base = best["clear"]
    print(f"\n| variant | best of {args.runs} | CSV MB/s | vs clear |")
    print("|---|---:|---:|---:|")
    for name, _ in variants:
        print(f"| {name} | {best[name]:.2f} s | {plain_size / 1e6 / best[name]:.0f} | "
              f"{(best[name] / base - 1) * 100:+.1f} % |")
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
