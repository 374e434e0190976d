#!/usr/bin/env bash
# Reproduce the bundled model src/scadm/bundled/synthetic-64 from nothing (about 97 minutes on a 2-core CPU;
# the two models themselves take 80 of them, the parser 13):
# synthetic data -> autoencoder -> SCA-DM -> a compact parser for the benchmark -> src/scadm/bundled/.
#   bash scripts/train_bundled.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
SCADM=${SCADM:-.venv/bin/scadm}
$SCADM synth --n 22000 --size 64 --seed 0 --test-fraction 0.0909 --out data/synthetic-64
$SCADM train-autoencoder --config synthetic-64 --data data/synthetic-64 --out "$RUNS/synthetic-64-ae"
$SCADM train --config synthetic-64 --data data/synthetic-64 --autoencoder "$RUNS/synthetic-64-ae/autoencoder" \
    --out "$RUNS/synthetic-64"
$SCADM train-parser --data data/synthetic-64 --out "$RUNS/parser-synthetic-64" --steps 800 --threads 1
rm -rf src/scadm/bundled/synthetic-64.new
cp -r "$RUNS/synthetic-64/model" src/scadm/bundled/synthetic-64.new
cp -r "$RUNS/parser-synthetic-64" src/scadm/bundled/synthetic-64.new/parser
cp "$RUNS/synthetic-64/loss.png" "$RUNS/synthetic-64/loss.csv" "$RUNS/synthetic-64/config.yaml" src/scadm/bundled/synthetic-64.new/
cp "$RUNS/synthetic-64-ae/metrics.json" src/scadm/bundled/synthetic-64.new/autoencoder-metrics.json
cp "$RUNS/synthetic-64-ae/loss.png" src/scadm/bundled/synthetic-64.new/autoencoder-loss.png
rm -rf src/scadm/bundled/synthetic-64 && mv src/scadm/bundled/synthetic-64.new src/scadm/bundled/synthetic-64
echo "bundled model written to src/scadm/bundled/synthetic-64"
