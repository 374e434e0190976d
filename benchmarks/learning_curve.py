"""A learning curve from benchmark reports of a run's exports (prints a table, draws a picture).

    python benchmarks/learning_curve.py runs/curve/step-1000.json runs/curve/step-2000.json ... \
        [--picture docs/benchmark/curve.png]

Each JSON is `scadm eval synthetic --model RUN/exports/step-NNNNNNN --json ...`; the step is read
from the `--model` folder's name in the report's command (or from the file name). Training with
`training.export_every: K` writes those folders every K steps.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from scadm.eval.reporting import RATES, SHORT_NAMES


def step_of(path: Path, report: dict) -> int:
    for text in (report.get("command", ""), path.name):
        found = re.findall(r"step-0*(\d+)", text)
        if found:
            return int(found[-1])
    raise SystemExit(f"{path}: no step-N in its command or name; name the file step-N.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--picture", type=Path, default=None)
    args = ap.parse_args()
    rows = sorted((step_of(p, r), r) for p in args.reports for r in [json.loads(p.read_text())])
    print("| step | n | " + " | ".join(SHORT_NAMES.values()) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in RATES) + " |")
    for step, r in rows:
        print(f"| {step} | {r['n']} | " + " | ".join(f"{r[k]:.3f}" if k in r else "" for k in RATES) + " |")
    if args.picture:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        steps = [s for s, _ in rows]
        for key, name in SHORT_NAMES.items():
            if all(key in r for _, r in rows):
                se = [r.get("standard_errors", {}).get(key, 0.0) for _, r in rows]
                ax.errorbar(steps, [r[key] for _, r in rows], yerr=se, marker="o", ms=3, capsize=2, label=name)
        ax.set_xlabel("training step (batch 32)")
        ax.set_ylabel("rate (one standard error)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3, loc="lower right")
        fig.tight_layout()
        args.picture.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.picture, dpi=110)
        print(f"picture: {args.picture}")


if __name__ == "__main__":
    main()
