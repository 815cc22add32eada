#!/usr/bin/env python3
"""Strata against DuckDB and PySpark on the same recruitment data, in one run.

    python3 benches/compare/compare.py --strata target/release/strata --scale 1 --runs 5

Generates the landing data, then runs the same work (landing → enriched → ranked,
written as Parquet) in every engine, `--warmup` times and then `--runs` times,
interleaved so that machine noise hits all engines alike. Each engine's outputs are
checked against Strata's, then a table of median and min–max times is printed.
`--scaling 1,2,4,8` adds Strata's embedded time and peak memory at those scales.
"""

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from deltalake import DeltaTable

HERE = Path(__file__).resolve().parent
# The example's landing definitions, then the comparison's own raw, enriched and ranked tables.
PIPELINE = [HERE.parent.parent / "examples" / "recruitment" / "10_landing.sql", HERE / "pipeline"]
OUTPUTS = ["candidates", "open_jobs", "job_searches", "job_events_daily", "candidates_per_job"]
STRATA_TABLES = {
    "candidates": "enriched/candidates",
    "open_jobs": "enriched/open_jobs",
    "job_searches": "enriched/job_searches",
    "job_events_daily": "enriched/job_events_daily",
    "candidates_per_job": "ranked/candidates_per_job",
}
ENGINES = ["strata", "strata-cluster", "duckdb", "spark"]
LABELS = {
    "strata": "Strata embedded",
    "strata-cluster": "Strata, 1 scheduler + 2 executors",
    "duckdb": "DuckDB",
    "spark": "PySpark local[2]",
}
# Scores computed by different libm implementations may differ in the last bits.
SCORE_TOLERANCE = 1e-9


class Failure(Exception):
    """An engine failed or its outputs differ from Strata's."""


def timed(command, cwd=None):
    """Runs a command under /usr/bin/time -v: (wall seconds, peak RSS MB, stdout)."""
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, cwd=cwd
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise Failure(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return seconds, int(peak.group(1)) / 1024 if peak else float("nan"), done.stdout


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalCluster:
    """`strata cluster --executors 2`, up for the whole comparison as a cluster would be."""

    def __init__(self, strata):
        self.address = f"127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [strata, "cluster", "--executors", "2", "--listen", self.address],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in self.process.stdout:
            if line.startswith("cluster up"):
                return
        raise Failure("strata cluster did not come up")

    def stop(self):
        self.process.terminate()
        self.process.wait()


class Run:
    """One engine's run: its times and where its outputs are."""

    def __init__(self, engine, seconds, peak_mb, engine_seconds, out, avro_seconds=None):
        self.engine = engine
        self.seconds = seconds
        self.peak_mb = peak_mb
        self.engine_seconds = engine_seconds
        self.out = out
        self.avro_seconds = avro_seconds


def run_strata(strata, engine, data, out, cluster):
    """A fresh warehouse whose landing is the generated data; Strata builds it."""
    out.mkdir(parents=True)
    (out / "landing").symlink_to(data / "landing")
    if engine == "strata":
        command = [strata, "run", *map(str, PIPELINE), "--warehouse", str(out)]
    else:
        command = [strata, "submit", *map(str, PIPELINE), "--scheduler", cluster.address,
                   "--warehouse", str(out)]
    seconds, peak, _ = timed(command)
    report = json.loads(sorted((out / "_strata" / "runs").glob("*.json"))[-1].read_text())
    # The raw tables build together first; the longest of them is the Avro layer's time.
    avro = max(t["duration_ms"] for t in report["tables"] if t["layer"] == "raw") / 1000
    return Run(engine, seconds, peak, report["duration_ms"] / 1000, out, avro)


def run_python(engine, data, out):
    out.mkdir(parents=True)
    script = HERE / f"{engine}_job.py"
    seconds, peak, stdout = timed([sys.executable, str(script), str(data / "landing"), str(out)])
    said = json.loads(stdout.strip().splitlines()[-1])
    # A job that runs in a child process (Spark's JVM) reports that child's peak itself.
    peak = max(peak, said.get("peak_mb") or 0)
    return Run(engine, seconds, peak, said["seconds"], out)


def run_engine(engine, strata, data, out, cluster):
    if engine.startswith("strata"):
        return run_strata(strata, engine, data, out, cluster)
    return run_python(engine, data, out)


def read_output(run, name):
    """One output as a list of row dicts, whatever engine wrote it."""
    if run.engine.startswith("strata"):
        table = DeltaTable(str(run.out / STRATA_TABLES[name])).to_pyarrow_table()
    else:
        path = run.out / name
        if not path.exists():
            path = run.out / f"{name}.parquet"
        table = pq.read_table(str(path))
    return table.to_pylist()


def key_rows(rows, columns):
    return sorted(tuple(str(row[column]) for column in columns) for row in rows)


def check(reference, run):
    """Raises Failure where `run`'s outputs differ from the reference (Strata embedded)."""
    exact = {
        "job_searches": ["job_id", "searches", "gold_searches"],
        "job_events_daily": ["job_id", "event_date", "publisher", "campaign", "clicks",
                             "applications", "conversions", "qualified", "unqualified"],
        "open_jobs": ["job_id", "city"],
        "candidates": ["candidate_id", "city", "updated_at"],
    }
    for name, columns in exact.items():
        want = key_rows(read_output(reference, name), columns)
        got = key_rows(read_output(run, name), columns)
        if want != got:
            raise Failure(f"{LABELS[run.engine]}: {name} differs ({len(got)} rows, Strata {len(want)})")
    check_top(read_output(reference, "candidates_per_job"),
              read_output(run, "candidates_per_job"), LABELS[run.engine])


def check_top(want_rows, got_rows, label):
    """Same best-50 set per job and the same scores; ties at the cut may pick either."""
    def by_job(rows):
        jobs = {}
        for row in rows:
            jobs.setdefault(row["job_id"], {})[row["candidate_id"]] = row["score"]
        return jobs

    want, got = by_job(want_rows), by_job(got_rows)
    if set(want) != set(got):
        raise Failure(f"{label}: ranked jobs differ: {sorted(set(want) ^ set(got))[:10]}")
    for job, best in want.items():
        theirs = got[job]
        if len(best) != len(theirs):
            raise Failure(f"{label}: job {job} has {len(theirs)} candidates, Strata {len(best)}")
        cut = min(best.values())
        for candidate in set(best) | set(theirs):
            score = best.get(candidate, theirs.get(candidate))
            if candidate in best and candidate in theirs:
                if abs(best[candidate] - theirs[candidate]) > SCORE_TOLERANCE:
                    raise Failure(f"{label}: job {job} candidate {candidate} scores "
                                  f"{theirs[candidate]}, Strata {best[candidate]}")
            elif abs(score - cut) > SCORE_TOLERANCE:
                raise Failure(f"{label}: job {job}: candidate {candidate} (score {score}) is in "
                              f"one top 50 only, and not a tie at the cut ({cut})")


def generate(strata, scale, data):
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run([strata, "gen", "--scale", str(scale), "--no-bad-data", "--out", str(data)],
                   check=True, capture_output=True)


def compare(args, strata, work):
    data = work / "data"
    generate(strata, args.scale, data)
    manifest = json.loads((data / "landing" / "manifest.json").read_text())
    engines = args.engines.split(",")
    cluster = LocalCluster(strata) if "strata-cluster" in engines else None
    runs = {engine: [] for engine in engines}
    try:
        for round_index in range(args.warmup + args.runs):
            warmup = round_index < args.warmup
            # Rotate the order each round so no engine always runs first or last.
            shift = round_index % len(engines)
            latest = {}
            for engine in engines[shift:] + engines[:shift]:
                out = work / f"{engine}-{round_index}"
                shutil.rmtree(out, ignore_errors=True)
                latest[engine] = run_engine(engine, strata, data, out, cluster)
                print(f"  round {round_index + 1}{' (warm-up)' if warmup else ''}: "
                      f"{LABELS[engine]} {latest[engine].seconds:.2f} s", file=sys.stderr)
            for engine, run in latest.items():
                if engine != "strata":
                    check(latest["strata"], run)
                if not warmup:
                    runs[engine].append(run)
            for run in latest.values():
                # The outputs are checked; drop them, or the disk fills at larger scales.
                shutil.rmtree(run.out, ignore_errors=True)
    finally:
        if cluster:
            cluster.stop()
    report(args, manifest, runs)


def report(args, manifest, runs):
    print(f"\nScale {args.scale}: {manifest['events']:,} events, {manifest['candidates']:,} "
          f"candidates, {manifest['jobs']:,} jobs; {args.runs} runs after {args.warmup} warm-up, "
          f"interleaved. Every engine's outputs matched Strata embedded's.\n")
    strata_median = statistics.median(r.seconds for r in runs["strata"])
    print("| engine | median s | min–max s | in-engine median s | peak MB | Strata embedded is |")
    print("|---|---:|---:|---:|---:|---|")
    for engine, done in runs.items():
        seconds = [r.seconds for r in done]
        median = statistics.median(seconds)
        if engine == "strata":
            ratio = "—"
        elif median >= strata_median:
            ratio = f"{median / strata_median:.2f}× faster"
        else:
            ratio = f"{strata_median / median:.2f}× slower"
        # The cluster's work happens in its own processes; the timed client is small.
        peak = "—" if engine == "strata-cluster" else f"{max(r.peak_mb for r in done):,.0f}"
        print(f"| {LABELS[engine]} | {median:.2f} | {min(seconds):.2f}–{max(seconds):.2f} "
              f"| {statistics.median(r.engine_seconds for r in done):.2f} "
              f"| {peak} | {ratio} |")
    for engine in ("strata", "strata-cluster"):
        if runs.get(engine):
            avro = statistics.median(r.avro_seconds for r in runs[engine])
            print(f"\n{LABELS[engine]}: the raw layer (landing files to Avro, which the other "
                  f"engines do not do) took a median {avro:.2f} s of the run.")


def scaling(args, strata, work):
    print("\n| scale | events | Strata embedded s | peak MB | events/s |")
    print("|---:|---:|---:|---:|---:|")
    for scale in args.scaling.split(","):
        data = work / f"scaling-{scale}"
        generate(strata, scale, data)
        events = json.loads((data / "landing" / "manifest.json").read_text())["events"]
        out = work / f"scaling-{scale}-run"
        shutil.rmtree(out, ignore_errors=True)
        run = run_strata(strata, "strata", data, out, None)
        print(f"| {scale} | {events:,} | {run.seconds:.2f} | {run.peak_mb:,.0f} "
              f"| {events / run.seconds:,.0f} |", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--scale", default="1")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--scaling", default="", help="scales for Strata alone, e.g. 1,2,4,8")
    parser.add_argument("--work", default=None, help="scratch directory (default: a new temp dir)")
    args = parser.parse_args()
    unknown = set(args.engines.split(",")) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines {sorted(unknown)}; choose from {ENGINES}")
    if "strata" not in args.engines.split(","):
        parser.error("the engines must include strata: the others are checked against it")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    strata = Path(args.strata).resolve()
    if not strata.is_file():
        parser.error(f"no strata binary at {strata}; build it with cargo build --release")
    work = Path(args.work or tempfile.mkdtemp(prefix="strata-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        compare(args, str(strata), work)
        if args.scaling:
            scaling(args, str(strata), work)
    except Failure as failure:
        sys.exit(f"compare: {failure}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
