#!/usr/bin/env python3
"""The recruitment example embedded and on a local cluster (1 scheduler, 2 executors).

For each scale: generate the landing data, run the example embedded with
`strata run`, then submit it to `strata cluster --executors 2` on a copy of the same
landing files. Prints wall time, peak memory, rows/s and the cluster's ratio to the
embedded run, then each table's build time in both, from the runs' JSON reports.

    python3 benches/example_cluster.py --strata target/release/strata --scales 1,4
"""

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "recruitment"


def run_timed(command):
    """Runs a command under /usr/bin/time -v; returns (seconds, peak RSS in MB)."""
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return seconds, int(peak.group(1)) / 1024 if peak else float("nan")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def latest_report(warehouse):
    reports = sorted((warehouse / "_strata" / "runs").glob("*.json"))
    return json.loads(reports[-1].read_text())


def landing_rows(report):
    """Rows read by the raw layer: every landing row ingested."""
    return sum(t["rows_read"] for t in report["tables"] if t["layer"] == "raw")


def published(report):
    return {t["table"]: t["rows_written"] for t in report["tables"] if t["layer"] != "landing"}


def cluster_run(strata, warehouse, executors):
    """Starts `strata cluster`, submits the example, returns (seconds, scheduler+executors peak MB)."""
    address = f"127.0.0.1:{free_port()}"
    cluster = subprocess.Popen(
        [strata, "cluster", "--executors", str(executors), "--listen", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in cluster.stdout:
            if line.startswith("cluster up"):
                break
        else:
            sys.exit("strata cluster did not come up")
        seconds, _ = run_timed(
            [strata, "submit", str(EXAMPLE), "--scheduler", address, "--warehouse", str(warehouse)]
        )
        peak = cluster_peak_mb(cluster.pid)
        return seconds, peak
    finally:
        cluster.terminate()
        cluster.wait()


def cluster_peak_mb(parent):
    """Sum of the peak RSS (VmHWM) of the cluster's processes, read before they stop."""
    total = 0
    children = subprocess.run(
        ["pgrep", "-P", str(parent)], capture_output=True, text=True
    ).stdout.split()
    for pid in children:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        if found:
            total += int(found.group(1))
    return total / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--scales", default="1,4")
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--work", default=None, help="directory for the warehouses")
    args = parser.parse_args()
    strata = str(Path(args.strata).resolve())
    work = Path(args.work or tempfile.mkdtemp(prefix="strata-bench-"))

    rows = []
    per_table = {}
    for scale in args.scales.split(","):
        embedded = work / f"embedded-s{scale}"
        distributed = work / f"cluster-s{scale}"
        for path in (embedded, distributed):
            shutil.rmtree(path, ignore_errors=True)
        started = time.monotonic()
        subprocess.run(
            [strata, "gen", "--scale", scale, "--out", str(embedded)],
            check=True,
            capture_output=True,
        )
        generated = time.monotonic() - started
        shutil.copytree(embedded, distributed)

        seconds, peak = run_timed([strata, "run", str(EXAMPLE), "--warehouse", str(embedded)])
        embedded_report = latest_report(embedded)
        cluster_seconds, cluster_peak = cluster_run(strata, distributed, args.executors)
        cluster_report = latest_report(distributed)
        if published(embedded_report) != published(cluster_report):
            sys.exit(
                f"scale {scale}: the cluster published other row counts:\n"
                f"{published(embedded_report)}\n{published(cluster_report)}"
            )
        landing = landing_rows(embedded_report)
        rows.append(
            (scale, generated, landing, seconds, peak, cluster_seconds, cluster_peak)
        )
        for label, report in (("embedded", embedded_report), ("cluster", cluster_report)):
            for table in report["tables"]:
                if table["layer"] == "landing":
                    continue
                per_table.setdefault((scale, table["table"]), {})[label] = table["duration_ms"] / 1000

    print("| scale | landing rows | gen s | embedded s | embedded peak MB | embedded rows/s "
          "| cluster s | cluster peak MB (3 processes) | cluster rows/s | cluster / embedded |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for scale, generated, landing, seconds, peak, cluster_seconds, cluster_peak in rows:
        print(
            f"| {scale} | {landing:,} | {generated:.1f} | {seconds:.1f} | {peak:,.0f} "
            f"| {landing / seconds:,.0f} | {cluster_seconds:.1f} | {cluster_peak:,.0f} "
            f"| {landing / cluster_seconds:,.0f} | {cluster_seconds / seconds:.2f}× |"
        )
    print()
    print("| scale | table | embedded s | cluster s |")
    print("|---|---|---:|---:|")
    for (scale, table), times in per_table.items():
        print(
            f"| {scale} | {table} | {times.get('embedded', float('nan')):.2f} "
            f"| {times.get('cluster', float('nan')):.2f} |"
        )


if __name__ == "__main__":
    main()
