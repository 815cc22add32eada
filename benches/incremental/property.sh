#!/usr/bin/env bash
# Issue 27's contract, run long: random pipelines of the shapes Strata refreshes from
# what changed, random deliveries, and after every run each table compared with a
# --full-refresh build. CI runs 3 cases of one seed; this runs many of another.
#
#   benches/incremental/property.sh [SEED] [CASES]
set -euo pipefail
cd "$(dirname "$0")/../.."
export STRATA_PROPERTY_SEED="${1:-$(date +%s)}"
export STRATA_PROPERTY_CASES="${2:-100}"
echo "seed $STRATA_PROPERTY_SEED, $STRATA_PROPERTY_CASES cases"
cargo test --workspace --offline --test integration -- refresh_property --nocapture
