#!/usr/bin/env bash
# Reproduce the bundled model src/scadm/bundled/synthetic-64 from nothing:
# synthetic data -> first stage -> SCA-DM -> a compact parser for the benchmark -> src/scadm/bundled/.
#   bash scripts/train_bundled.sh [RUNS_DIR]
#
# Resumable: stop it at any time (Ctrl-C, a closed session) and run the same command again. Each
# stage that finished is skipped and a stage that was cut short continues from its last checkpoint
# (at most 250 diffusion steps are redone), with the same weights as one uninterrupted run at the
# same thread count. The time each stage took on a 2-core CPU is in src/scadm/bundled/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
SCADM=${SCADM:-.venv/bin/scadm}
CONFIG=${CONFIG:-synthetic-64}  # the preset (or a YAML recipe)
DATA=data/synthetic-64
AE="$RUNS/synthetic-64-ae"
DM="$RUNS/synthetic-64"
PARSER="$RUNS/parser-synthetic-64"

# --resume when the run folder already holds a checkpoint
resume() { compgen -G "$1/checkpoints/step-*" > /dev/null && echo --resume || true; }

[ -f "$DATA/styles.json" ] || \
  $SCADM synth --n 22000 --size 64 --seed 0 --test-fraction 0.0909 --out "$DATA"
[ -f "$AE/autoencoder/config.json" ] || \
  $SCADM train-autoencoder --config "$CONFIG" --data "$DATA" --out "$AE" $(resume "$AE")
[ -f "$DM/model/config.json" ] || \
  $SCADM train --config "$CONFIG" --data "$DATA" --autoencoder "$AE/autoencoder" --out "$DM" $(resume "$DM")
[ -f "$PARSER/parser.json" ] || \
  $SCADM train-parser --data "$DATA" --out "$PARSER" --steps 800 --threads 1

rm -rf src/scadm/bundled/synthetic-64.new
cp -r "$DM/model" src/scadm/bundled/synthetic-64.new
cp -r "$PARSER" src/scadm/bundled/synthetic-64.new/parser
cp "$DM/loss.png" "$DM/loss.csv" "$DM/config.yaml" src/scadm/bundled/synthetic-64.new/
cp "$(ls "$DM"/samples/step-*.png | tail -1)" src/scadm/bundled/synthetic-64.new/preview-final.png
cp "$AE/metrics.json" src/scadm/bundled/synthetic-64.new/autoencoder-metrics.json
cp "$AE/loss.png" src/scadm/bundled/synthetic-64.new/autoencoder-loss.png
cp "$AE/loss.csv" src/scadm/bundled/synthetic-64.new/autoencoder-loss.csv
chmod -R u+rwX,go+rX src/scadm/bundled/synthetic-64.new  # the runs write their weights owner-only
rm -rf src/scadm/bundled/synthetic-64 && mv src/scadm/bundled/synthetic-64.new src/scadm/bundled/synthetic-64
echo "bundled model written to src/scadm/bundled/synthetic-64"
