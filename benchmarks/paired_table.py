"""Synthetic-benchmark reports side by side, each against the first, paired (prints a markdown table; not a test).

    python benchmarks/paired_table.py docs/benchmark/from-noise.json docs/benchmark/report.json [more.json ...]

Every report must come from `scadm eval synthetic --json` (or `--report-dir`) on the same faces and
seeds (same --n and --seed), so each face's outcomes pair up: a cell reads "value ± its standard
error (Δ difference from the first report ± the paired standard error of that difference)".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scadm.eval.controllability import paired_standard_errors
from scadm.eval.reporting import FIDELITY, RATES


def table(paths: list[Path]) -> str:
    reports = [json.loads(p.read_text()) for p in paths]
    base = reports[0]
    names = [p.parent.name if p.stem == "report" else p.stem for p in paths]
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(paths)]
    for key in (*RATES, *FIDELITY):
        if not any(key in r for r in reports):
            continue
        cells = []
        for k, r in enumerate(reports):
            if key not in r:
                cells.append("-")
                continue
            cell = f"{r[key]:.3f} ± {r.get('standard_errors', {}).get(key, float('nan')):.3f}"
            if k and key in base:
                se = paired_standard_errors(r, base).get(key)
                if se is not None:
                    cell += f" (Δ {r[key] - base[key]:+.3f} ± {se:.3f})"
            cells.append(cell)
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    print(table(ap.parse_args().reports))


if __name__ == "__main__":
    main()
