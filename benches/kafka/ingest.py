#!/usr/bin/env python3
"""Kafka ingest (issue 29): how fast Strata reads a topic into raw, and how soon a
message produced is in a STREAM table, against a real Kafka-protocol broker (tansu).

Throughput: `--messages` JSON messages of about `--value-bytes` bytes each are
produced into a topic of `--partitions` partitions, then one `strata run` reads them all
into a raw table (Avro). Reported: messages/s and MB/s of message values, for the raw
build alone and for the whole run (start-up and planning included). The same messages
are then read by what a user would write by hand without Strata: a Python consumer
(confluent-kafka, librdkafka underneath) that parses each value and writes Avro with
fastavro. Spark Structured Streaming's Kafka source is a Maven artifact, which this
machine cannot fetch, so Spark is not in this comparison.

Latency: `strata run --continuous --interval 1s` follows the topic while a producer
sends `--rate-mb` MB/s for `--seconds` seconds; each message carries the time it was
sent, and each row of the STREAM table its commit time (from the table's change feed). Reported:
p50, p90 and p99 of (commit time - the message's send time).

    cargo build --release -p strata
    cargo install tansu@0.6.0 --locked --features dynostore
    python3 -m pip install confluent-kafka fastavro deltalake
    python3 benches/kafka/ingest.py --strata target/release/strata
"""

import argparse
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

TOPIC = "tracking-events"
# More of the source's OPTIONS (librdkafka properties, say), from `--options`.
OPTIONS = [""]
# The first event id of the messages the latency run follows.
FOLLOWED_FROM = 1_000_000_000

PIPELINE = """
CREATE EXTERNAL TABLE landing.events (
  event_id BIGINT NOT NULL, job_id BIGINT, candidate_id BIGINT, kind VARCHAR,
  ts TIMESTAMP, sent_ms BIGINT, page VARCHAR
) STORED AS KAFKA LOCATION 'kafka://{brokers}/{topic}'
  OPTIONS ('max_messages_per_partition' '{cap}', 'group.id' 'strata-bench'{options});

CREATE TABLE raw.events AS SELECT * FROM landing.events;
"""

STREAM_TABLE = """
CREATE TABLE enriched.events WRITE APPEND
AS SELECT event_id, job_id, kind, sent_ms FROM STREAM(raw.events);
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tansu(binary, work):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(os.path.join(work, "tansu.log"), "w")
    proc = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://bench/"],
        stdout=log, stderr=log)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise SystemExit("tansu did not start")


def value(event_id, value_bytes):
    body = {
        "event_id": event_id, "job_id": event_id % 5000, "candidate_id": event_id % 90000,
        "kind": "view" if event_id % 4 else "apply", "ts": "2026-12-07T10:00:00",
        "sent_ms": int(time.time() * 1000), "page": "",
    }
    text = json.dumps(body)
    body["page"] = "x" * max(0, value_bytes - len(text))
    return json.dumps(body).encode()


def producer(brokers):
    return Producer({"bootstrap.servers": brokers, "linger.ms": 20, "batch.size": 1_000_000,
                     "queue.buffering.max.messages": 1_000_000, "enable.idempotence": True})


def produce(brokers, first, count, value_bytes, partitions, rate_bytes=None):
    """Sends `count` messages round-robin; at most `rate_bytes` a second if given."""
    sent, started, failed = 0, time.monotonic(), []
    out = producer(brokers)
    report = lambda err, _msg: failed.append(err) if err else None
    for i in range(first, first + count):
        payload = value(i, value_bytes)
        while True:
            try:
                out.produce(TOPIC, payload, key=str(i), partition=i % partitions, on_delivery=report)
                break
            except BufferError:
                out.poll(0.01)
        sent += len(payload)
        if rate_bytes and i % 1000 == 0:
            ahead = sent / rate_bytes - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        out.poll(0)
    out.flush(120)
    # tansu 0.6 answers a partition's newest offset as its last batch's first offset
    # plus one; a last batch of one message per partition keeps that the true end.
    for partition in range(partitions):
        out.produce(TOPIC, value(first + count + partition, value_bytes), partition=partition,
                    on_delivery=report)
        out.flush(30)
    if failed:
        raise SystemExit(f"{len(failed)} messages not delivered: {failed[0]}")
    return sent


def run_strata(strata, pipeline_dir, warehouse, extra=()):
    started = time.monotonic()
    out = subprocess.run([strata, "run", pipeline_dir, "--warehouse", warehouse, *extra],
                         capture_output=True, text=True)
    wall = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"strata run failed:\n{out.stdout}\n{out.stderr}")
    path = next(line[len("report: "):] for line in out.stdout.splitlines()
                if line.startswith("report: "))
    report = json.load(open(path.strip()))
    raw = next(t for t in report["tables"] if t["table"] == "raw.events")
    return raw, wall


def python_consumer(brokers, partitions, work):
    """Reads every message, parses it, writes Avro with fastavro: the hand-written way."""
    import fastavro
    schema = fastavro.parse_schema({
        "type": "record", "name": "event", "fields": [
            {"name": name, "type": ["null", kind]} for name, kind in [
                ("event_id", "long"), ("job_id", "long"), ("candidate_id", "long"),
                ("kind", "string"), ("ts", "string"), ("sent_ms", "long"), ("page", "string"),
                ("_kafka_partition", "int"), ("_kafka_offset", "long")]]})
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "python-bench",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(partitions)])
    started = time.monotonic()
    done, written = set(), 0
    with open(os.path.join(work, "python.avro"), "wb") as out:
        writer = fastavro.write.Writer(out, schema)
        while len(done) < partitions:
            for message in consumer.consume(10_000, timeout=1.0):
                if message.error():
                    if message.error().code() == -191:  # partition EOF
                        done.add(message.partition())
                    continue
                row = json.loads(message.value())
                row["_kafka_partition"] = message.partition()
                row["_kafka_offset"] = message.offset()
                writer.write(row)
                written += 1
        writer.flush()
    consumer.close()
    return written, time.monotonic() - started


def latency(strata, work, brokers, partitions, value_bytes, rate_mb, seconds):
    pipeline_dir = os.path.join(work, "latency")
    os.makedirs(pipeline_dir)
    with open(os.path.join(pipeline_dir, "p.sql"), "w") as f:
        f.write(PIPELINE.format(brokers=brokers, topic=TOPIC, cap=10_000_000, options=OPTIONS[0])
                + STREAM_TABLE)
    warehouse = os.path.join(work, "latency-wh")
    # Start from the topic's end: only the messages sent while the run follows it.
    run_strata(strata, pipeline_dir, warehouse)
    proc = subprocess.Popen([strata, "run", pipeline_dir, "--warehouse", warehouse,
                             "--continuous", "--interval", "1s"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    time.sleep(2)
    count = int(rate_mb * 1e6 / value_bytes * seconds)
    sent = produce(brokers, FOLLOWED_FROM, count, value_bytes, partitions, rate_bytes=rate_mb * 1e6)
    time.sleep(5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    # Each row's commit time, from the table's change feed.
    import pyarrow
    from deltalake import DeltaTable
    changes = pyarrow.table(DeltaTable(os.path.join(warehouse, "enriched", "events"))
                            .load_cdf(starting_version=0).read_all())
    committed = changes.column("_commit_timestamp").cast(pyarrow.timestamp("ms")).cast(pyarrow.int64())
    # Only the messages sent while the run followed the topic.
    waits = sorted(c - s for c, s, e in zip(committed.to_pylist(),
                                            changes.column("sent_ms").to_pylist(),
                                            changes.column("event_id").to_pylist())
                   if e >= FOLLOWED_FROM)
    batches = [line for line in lines if line.startswith("batch ")]
    return {
        "messages": count, "mb_per_s_offered": round(sent / 1e6 / seconds, 1),
        "rows_in_stream_table": len(waits), "batches": len(batches),
        "p50_s": round(waits[len(waits) // 2] / 1000, 2),
        "p90_s": round(waits[int(len(waits) * 0.9)] / 1000, 2),
        "p99_s": round(waits[int(len(waits) * 0.99)] / 1000, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strata", default="target/release/strata")
    parser.add_argument("--tansu", default="tansu")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate-mb", type=float, default=20.0)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--options", default="",
                        help="more source options, as SQL: \"'fetch.max.bytes' '104857600'\"")
    args = parser.parse_args()
    OPTIONS[0] = f", {args.options}" if args.options else ""
    strata = os.path.abspath(args.strata)
    work = tempfile.mkdtemp(prefix="strata-kafka-bench-")
    broker, brokers = start_tansu(args.tansu, work)
    try:
        subprocess.run([args.tansu, "topic", "create", TOPIC, "--broker", f"tcp://{brokers}",
                        "--partitions", str(args.partitions)], check=True)
        started = time.monotonic()
        sent = produce(brokers, 0, args.messages, args.value_bytes, args.partitions)
        produced_s = time.monotonic() - started
        total = args.messages + args.partitions
        pipeline_dir = os.path.join(work, "ingest")
        os.makedirs(pipeline_dir)
        with open(os.path.join(pipeline_dir, "p.sql"), "w") as f:
            f.write(PIPELINE.format(brokers=brokers, topic=TOPIC, cap=10 * total,
                                    options=OPTIONS[0]))
        raw, wall = run_strata(strata, pipeline_dir, os.path.join(work, "wh"))
        if raw["rows_read"] != total:
            raise SystemExit(f"strata read {raw['rows_read']} of {total} messages")
        build_s = raw["duration_ms"] / 1000
        python_rows, python_s = python_consumer(brokers, args.partitions, work)
        result = {
            "messages": total, "value_mb": round(sent / 1e6, 1),
            "produce_s": round(produced_s, 1),
            "strata_raw_build_s": round(build_s, 2),
            "strata_raw_msgs_per_s": round(total / build_s),
            "strata_raw_mb_per_s": round(sent / 1e6 / build_s, 1),
            "strata_whole_run_s": round(wall, 2),
            "python_consumer_s": round(python_s, 2),
            "python_consumer_msgs_per_s": round(python_rows / python_s),
            "python_consumer_mb_per_s": round(sent / 1e6 / python_s, 1),
        }
        if not args.skip_latency:
            result["latency"] = latency(strata, work, brokers, args.partitions,
                                        args.value_bytes, args.rate_mb, args.seconds)
        print(json.dumps(result, indent=2))
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
