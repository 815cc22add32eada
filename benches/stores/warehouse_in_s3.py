"""The recruitment example with its warehouse on the local disk and in S3 (moto's
server on 127.0.0.1), in one run: wall time of each, and the S3 requests of the run per
table, counted from the server's own request log (so Strata's count cannot flatter it).

Usage: python3 benches/stores/warehouse_in_s3.py --strata target/release/strata --scale 1
"""

import argparse
import collections
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "recruitment")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(command, env):
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def table_of(line, bucket, prefix):
    """The table (or landing source) a request of the server's log touches."""
    try:
        method, target = line.split('"')[1].split()[:2]
    except (IndexError, ValueError):
        return None
    path, _, query = target.partition("?")
    key = urllib.parse.unquote(path[len(f"/{bucket}/"):]) if path.startswith(f"/{bucket}/") else ""
    if not key:
        key = urllib.parse.parse_qs(query).get("prefix", [""])[0]
    if not key.startswith(prefix + "/"):
        return None
    parts = key[len(prefix) + 1 :].split("/")
    kind = "LIST" if method == "GET" and "list-type" in query else method
    if parts[0] in ("landing", "raw", "enriched", "ranked") and len(parts) > 1:
        return f"{parts[0]}.{parts[1]}", kind
    return parts[0], kind


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--scale", default="1")
    args = parser.parse_args()
    strata = os.path.abspath(args.strata)
    scratch = tempfile.mkdtemp(prefix="strata-s3-bench-")
    port = free_port()
    log_path = os.path.join(scratch, "moto.log")
    log = open(log_path, "w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench-secret").create_bucket(Bucket="bench")
        local = os.path.join(scratch, "local")
        subprocess.run([strata, "gen", "--scale", args.scale, "--out", local], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([strata, "gen", "--scale", args.scale, "--out", "s3://bench/wh"], env=env, check=True, stdout=subprocess.DEVNULL)
        local_seconds = timed([strata, "run", EXAMPLE, "--warehouse", local], env)
        log.flush()
        before = sum(1 for _ in open(log_path))
        s3_seconds = timed([strata, "run", EXAMPLE, "--warehouse", "s3://bench/wh"], env)
        again_seconds = timed([strata, "run", EXAMPLE, "--warehouse", "s3://bench/wh"], env)
        log.flush()
        lines = open(log_path).read().splitlines()
        first_run = lines[before:]
        counts = collections.defaultdict(collections.Counter)
        for line in first_run:
            found = table_of(line, "bench", "wh")
            if found:
                counts[found[0]][found[1]] += 1
        landing_files = collections.Counter()
        for root, _, files in os.walk(os.path.join(local, "landing")):
            name = os.path.relpath(root, os.path.join(local, "landing")).split("/")[0]
            landing_files[f"landing.{name}"] += len(files)
        print(f"scale {args.scale}: local disk {local_seconds:.2f} s, S3 (moto) {s3_seconds:.2f} s, S3 again with nothing new {again_seconds:.2f} s")
        print()
        print("| prefix | files delivered | GET | HEAD | LIST | PUT | POST | DELETE | total |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for table in sorted(counts):
            c = counts[table]
            total = sum(c.values())
            delivered = landing_files.get(table, "")
            print(f"| {table} | {delivered} | {c['GET']} | {c['HEAD']} | {c['LIST']} | {c['PUT']} | {c['POST']} | {c['DELETE']} | {total} |")
        print(f"| all | | | | | | | | {sum(sum(c.values()) for c in counts.values())} |")
    finally:
        server.kill()
        shutil.rmtree(scratch, ignore_errors=True)


main()
