"""Fewer sampling steps at equal quality: the synthetic benchmark per solver and step count (prints a table).

    python benchmarks/step_study.py [--model MODEL] [--n 200] [--out runs/step-study]
                                    [--settings ddim:200,dpm++:10,dpm++:15,dpm++:20,unipc:10,unipc:15]

Runs `scadm eval synthetic --n N --sampler S --steps K --json OUT/S-K.json` for every setting
(a setting whose JSON exists is not run again, so the study resumes), then compares each with
the first setting (the reference, DDIM with 200 steps by default): a rate is "equal" when it
differs from the reference's by at most one standard error of that difference,
sqrt(se_ref^2 + se^2) (a rate at 1.000 has a standard error of 0, so the reference's alone
would ask for exact equality there). Seconds per image
are the reconstruction protocol's wall time over n (guided sampling, batches of 16, decoding
included) on this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RATES = ("reconstruction_success", "total_swap_success", "partial_swap_success", "partial_swap_preserved",
         "partial_swap_all_success", "partial_swap_all_preserved", "mixed_success", "interpolation_monotonic",
         "noise_miou_ratio")
SHORT = ("recon", "total", "partial", "preserved", "all", "all kept", "mixed", "interp", "noise ratio")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", default="runs/step-study")
    ap.add_argument("--settings", default="ddim:200,dpm++:10,dpm++:15,dpm++:20,unipc:10,unipc:15")
    ap.add_argument("--scadm", default=str(Path(sys.executable).with_name("scadm")))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = [(s.split(":")[0], int(s.split(":")[1])) for s in args.settings.split(",")]
    reports = {}
    for sampler, steps in settings:
        path = out / f"{sampler.replace('+', 'p')}-{steps}-n{args.n}.json"
        if not path.is_file():
            cmd = [args.scadm, "eval", "synthetic", "--n", str(args.n), "--sampler", sampler, "--steps", str(steps),
                   "--json", str(path)] + (["--model", args.model] if args.model else [])
            print("running:", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        reports[sampler, steps] = json.loads(path.read_text())

    ref_key = settings[0]
    ref = reports[ref_key]
    ref_sec = ref["seconds"]["reconstruction"] / ref["n"]
    print(f"\nreference: {ref_key[0]} {ref_key[1]} steps; a rate is equal when within one standard error of the difference\n")
    print("| sampler | steps | " + " | ".join(SHORT) + " | s / image | speed-up | all equal |")
    print("| --- | --- | " + " | ".join("---" for _ in SHORT) + " | --- | --- | --- |")
    for (sampler, steps), r in reports.items():
        cells, equal = [], True
        for key in RATES:
            v = r[key]
            se = (ref["standard_errors"][key] ** 2 + r["standard_errors"][key] ** 2) ** 0.5
            ok = abs(v - ref[key]) <= se
            equal &= ok
            cells.append(f"{v:.3f}" + ("" if ok else " *"))
        sec = r["seconds"]["reconstruction"] / r["n"]
        print(f"| {sampler} | {steps} | " + " | ".join(cells) + f" | {sec:.2f} | {ref_sec / sec:.1f}x | {'yes' if equal else 'no'} |")
    print("\n(* = differs from the reference by more than one standard error of the difference)")
    print("reference standard errors: " + ", ".join(f"{s} {ref['standard_errors'][k]:.3f}" for s, k in zip(SHORT, RATES)))


if __name__ == "__main__":
    main()
