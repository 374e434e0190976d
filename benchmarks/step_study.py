"""Fewer sampling steps at equal quality: the synthetic benchmark per solver and step count (prints a table).

    python benchmarks/step_study.py [--model MODEL] [--n 200] [--out runs/step-study] [--jobs 1]
                                    [--settings ddim:200,dpm++:8,dpm++:9,dpm++:10,unipc:9,unipc:10]

Runs `scadm eval synthetic --n N --sampler S --steps K --inversion none --json OUT/S-K-nN.json
--report-dir OUT/S-K-nN/` for every setting (every edit sampled from noise, so that the solver
alone differs; unipc and ddpm cannot invert) (a setting whose JSON exists is not run again, and a stopped
setting continues from its last finished protocol, so the study resumes; --jobs J runs J
settings at a time, each with 1/J of the threads), then compares each with
the first setting (the reference, DDIM with 200 steps by default): a rate is "equal" when it
is within one standard error of the reference's rate (the reference's own, faces as clusters).
Every setting scores the same faces with the same seeds, so the difference itself is measured
far more precisely than either rate: the table also gives the largest paired z over the rates,
|difference| / its paired standard error (`paired_standard_errors`), which tells a difference
that is real, however small, from noise. Seconds per image are the median over the protocols
(interpolation left out) of wall time over n (guided sampling, batches of 16, decoding
included) on this machine. A cached report made with another timestep spacing than this
scadm's (its `sampling_desc`), or one whose edits inverted the faces, is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scadm.config import load_config
from scadm.diffusion.schedule import NoiseSchedule
from scadm.eval.controllability import paired_standard_errors
from scadm.eval.reporting import RATES, SHORT_NAMES
from scadm.pipeline import default_model_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--parser", default=None, help="default: the model's parser/")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", default="runs/step-study")
    ap.add_argument("--settings", default="ddim:200,dpm++:8,dpm++:9,dpm++:10,unipc:9,unipc:10")
    ap.add_argument("--scadm", default=str(Path(sys.executable).with_name("scadm")))
    ap.add_argument("--jobs", type=int, default=1, help="settings run at a time (each with 1/J of the threads)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = [(s.split(":")[0], int(s.split(":")[1])) for s in args.settings.split(",")]
    paths = {k: out / f"{k[0].replace('+', 'p')}-{k[1]}-n{args.n}.json" for k in settings}
    env = dict(os.environ)
    if args.jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))

    def run(key: tuple[str, int]) -> None:
        (sampler, steps), path = key, paths[key]
        cmd = [args.scadm, "eval", "synthetic", "--n", str(args.n), "--sampler", sampler, "--steps", str(steps),
               "--inversion", "none", "--json", str(path), "--report-dir", str(path.with_suffix(""))]
        cmd += ["--model", args.model] if args.model else []
        cmd += ["--parser", args.parser] if args.parser else []
        print("running:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(run, [k for k in settings if not paths[k].is_file()]))
    reports = {k: json.loads(paths[k].read_text()) for k in settings}
    config = json.loads((Path(args.model or default_model_folder()) / "config.json").read_text())
    schedule = NoiseSchedule(load_config(config).schedule)
    for k, r in reports.items():
        if r.get("n") != args.n or (args.model and f"--model {args.model}" not in r.get("command", "")):
            sys.exit(f"{paths[k]}: made by `{r.get('command')}`, not by this study's --model / --n; "
                     "give another --out or delete it")
        spacing = f"{k[0]} ({schedule.spacing(k[0])} spacing)"
        if any(w in r.get("sampling_desc", "") for w in ("faces inverted", "faces edited")):
            sys.exit(f"{paths[k]}: its edits inverted the faces (`{r.get('sampling_desc')}`); this study samples "
                     "every edit from noise: give another --out or delete it")
        if not r.get("sampling_desc", "").startswith(spacing):
            sys.exit(f"{paths[k]}: sampled with `{r.get('sampling_desc')}`, not {spacing} as this scadm samples; "
                     "give another --out or delete it")

    ref_key = settings[0]
    ref = reports[ref_key]
    ref_sec = seconds_per_image(ref)
    print(f"\nreference: {ref_key[0]} {ref_key[1]} steps; a rate is equal when within the reference rate's standard error\n")
    rates = [k for k in RATES if all(k in r for r in reports.values())]  # no parser: no noise ratio
    print("| sampler | steps | " + " | ".join(SHORT_NAMES[k] for k in rates)
          + " | s / image | speed-up | largest z | all equal |")
    print("| --- | --- | " + " | ".join("---" for _ in rates) + " | --- | --- | --- | --- |")
    for (sampler, steps), r in reports.items():
        paired = paired_standard_errors(r, ref)
        cells, equal, worst = [], True, 0.0
        for key in rates:
            diff, se_ref = abs(r[key] - ref[key]), ref["standard_errors"][key]
            ok = diff <= se_ref if se_ref > 0 else diff == 0  # no spread (or no trials): equal only if identical
            se = paired.get(key, (se_ref**2 + r["standard_errors"][key] ** 2) ** 0.5)
            worst = max(worst, diff / se if se > 0 else (0.0 if diff == 0 else float("inf")))
            equal &= ok
            cells.append(f"{r[key]:.3f}" + ("" if ok else " *"))
        sec = seconds_per_image(r)
        print(f"| {sampler} | {steps} | " + " | ".join(cells) + f" | {sec:.2f} | {ref_sec / sec:.1f}x | {worst:.1f} "
              f"| {'yes' if equal else 'no'} |")
    print("\n(* = differs from the reference by more than the reference's standard error, from the unrounded "
          "rates; largest z = the largest |difference| / its paired standard error over the rates)")
    print("reference standard errors: " + ", ".join(f"{SHORT_NAMES[k]} {ref['standard_errors'][k]:.3f}" for k in rates))


def seconds_per_image(report: dict) -> float:
    """The median over the protocols of wall seconds per image (interpolation, five images per
    pair, left out): a protocol slowed by another job on the machine does not decide it."""
    per = [v for k, v in report["seconds"].items() if k != "interpolation"]
    return statistics.median(per) / report["n"]


if __name__ == "__main__":
    main()
