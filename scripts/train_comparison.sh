#!/usr/bin/env bash
# Reproduce docs/comparison.md: five conditioning strategies trained with the same budget
# (800 steps of batch 32, the bundled first stage) on the synthetic faces, then scored.
#   bash scripts/train_comparison.sh [RUNS_DIR]
# Needs data/synthetic-64 (first line of scripts/train_bundled.sh). About 1.5 hours of a 2-core CPU
# in all with the first-edition first stage (longer on the current one); the trainings are independent, so machines with more cores or GPUs can run them at once.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/cmp}
SCADM=${SCADM:-.venv/bin/scadm}
DATA=data/synthetic-64
STEPS=800
for cfg in synthetic-64 synthetic-64-plain multicond-64-attr multicond-64-mnp multicond-64; do
  [ -f "$RUNS/$cfg/model/config.json" ] || $SCADM train --config $cfg --data $DATA --out "$RUNS/$cfg" --max-steps $STEPS
done
[ -f "$RUNS/classifier/classifier.json" ] || \
  $SCADM train-classifier --data $DATA --out "$RUNS/classifier" --steps 600 --threads 1
# Fig. 5b ablation: masked vs plain cross-attention, the synthetic ground-truth benchmark.
for cfg in synthetic-64 synthetic-64-plain; do
  $SCADM eval synthetic --model "$RUNS/$cfg/model" --parser src/scadm/bundled/synthetic-64/face_parser --n 100 \
      --inversion none --json "$RUNS/$cfg/synthetic.json"
done
# Multi-conditioning paper Table 4 columns for every model (attribute accuracy, mask mIoU, diversity);
# "bundled" is the default model (no --model).
for cfg in bundled synthetic-64 multicond-64-attr multicond-64-mnp multicond-64; do
  model=(); [ "$cfg" = bundled ] || model=(--model "$RUNS/$cfg/model")
  $SCADM eval conditioning "${model[@]}" --data $DATA --n 100 --classifier "$RUNS/classifier" \
      --parser src/scadm/bundled/synthetic-64/face_parser --diversity-conditions 10 --samples 10 \
      --out "$RUNS/$cfg/conditioning" --json "$RUNS/$cfg/conditioning.json"
done
