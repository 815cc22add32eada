#!/bin/bash
# Kills an executor part way through a distributed run of the example and reports how
# the run ended. A scheduler (--executor-timeout 10) and two executors of 2 slots run as
# separate processes on 127.0.0.1; the executor is SIGKILLed DELAY seconds after the
# progress line NEEDLE. A run still going after LIMIT seconds counts as hung.
#
#   benches/hardening/kill_executor.sh target/release/strata 1.5 'building ranked.' 3
set -u
STRATA=$(realpath "$1"); SCALE=$2; NEEDLE=$3; DELAY=$4; LIMIT=${5:-300}
EXAMPLE=$(cd "$(dirname "$0")/../../examples/recruitment" && pwd)
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
cd "$WORK"
"$STRATA" gen --scale "$SCALE" --out data > /dev/null 2>&1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$STRATA" scheduler --listen 127.0.0.1:$PORT --executor-timeout 10 > scheduler.log 2>&1 &
sleep 1
for i in 0 1; do
  "$STRATA" executor --scheduler 127.0.0.1:$PORT --concurrent-tasks 2 --heartbeat-interval 1 \
    --work-dir "$WORK/executor-$i" > executor-$i.log 2>&1 &
  echo $! > executor-$i.pid
done
sleep 3
started=$(date +%s)
timeout "$LIMIT" "$STRATA" submit "$EXAMPLE" --scheduler 127.0.0.1:$PORT --warehouse "$WORK/data" \
  > submit.out 2> submit.err &
SUBMIT=$!
until grep -q "$NEEDLE" submit.err 2>/dev/null; do sleep 0.2; done
sleep "$DELAY"
kill -9 "$(cat executor-0.pid)"
echo "executor killed $(( $(date +%s) - started )) s in, $DELAY s after \"$NEEDLE\""
wait $SUBMIT; status=$?
if [ $status -eq 124 ]; then echo "HUNG: the run had not ended after $LIMIT s"; exit 1; fi
echo "the run ended after $(( $(date +%s) - started )) s with status $status"
tail -3 submit.out
