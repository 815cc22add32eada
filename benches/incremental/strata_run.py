"""Runs a pipeline with the `strata` binary and reads its run report, for the benches."""

import gzip
import json
import subprocess
import sys
import time


def run(strata, pipeline, warehouse, *extra):
    """Runs `pipeline` on `warehouse`: its wall time, and its report's tables by name."""
    started = time.perf_counter()
    done = subprocess.run(
        [strata, "run", pipeline, "--warehouse", warehouse, *extra],
        capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"strata run failed:\n{done.stdout}\n{done.stderr}")
    report_path = next(l[len("report: "):] for l in done.stdout.splitlines() if l.startswith("report: "))
    report = json.load(open(report_path.strip()))
    return seconds, {t["table"]: t for t in report["tables"]}


def write_csv_gz(path, header, lines):
    """A landing file as the apps deliver it: gzip CSV with a header."""
    with gzip.open(path, "wt", compresslevel=1) as out:
        out.write(header)
        out.writelines(lines)
