"""Writing evaluation results: JSON, a markdown table with the protocol next to every number, plots."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

#: Target rates for the bundled model; the markdown report marks each as met or NOT met.
THRESHOLDS = {
    "reconstruction_success": 0.95,
    "partial_swap_success": 0.90,
    "partial_swap_preserved": 0.90,
    "mixed_success": 0.90,
    "interpolation_monotonic": 0.90,
    "noise_miou_ratio": 0.85,
}

#: the benchmark's rates in report order, with the short names tables use
RATES = ("reconstruction_success", "total_swap_success", "partial_swap_success", "partial_swap_preserved",
         "partial_swap_all_success", "partial_swap_all_preserved", "mixed_success", "interpolation_monotonic",
         "noise_miou_ratio")
#: fidelity means beside the rates (PSNR dB, SSIM, LPIPS, drift in 0..255): the ceiling next to what edits give
FIDELITY = ("reconstruction_psnr", "reconstruction_ssim", "reconstruction_lpips", "first_stage_psnr", "first_stage_ssim",
            "unedited_drift", "first_stage_drift", "first_stage_preserved")
#: each figure's name and what it measures, in one sentence (reports for people: the demo's page)
DESCRIPTIONS = {
    "reconstruction_success": ("Reconstruction", "regions of a reconstructed face closer in colour to its own style "
                               "than to another face's"),
    "total_swap_success": ("Total swap", "regions that took the reference's style rather than keeping the target's"),
    "partial_swap_success": ("Partial swap, swapped part", "single swapped parts (skin, hair, one eye, lip, cloth) "
                             "that took the reference's style"),
    "partial_swap_preserved": ("Partial swap, the rest", "the other regions of the same edits that kept the target's "
                               "style"),
    "mixed_success": ("Mixing", "the reference's parts of a mix closer to the reference than to a random face"),
    "interpolation_monotonic": ("Interpolation", "interpolations whose colour moves steadily from target to reference"),
    "noise_miou_ratio": ("Noise-based generation", "how well a parser reads the generated masks, relative to real faces"),
    "reconstruction_psnr": ("Reconstruction PSNR (dB)", "the reconstruction against the input"),
    "reconstruction_ssim": ("Reconstruction SSIM", "the reconstruction against the input"),
    "first_stage_psnr": ("First stage PSNR (dB)", "the autoencoder's own encode-decode: the ceiling of any edit"),
    "first_stage_ssim": ("First stage SSIM", "the autoencoder's own encode-decode: the ceiling of any edit"),
    "unedited_drift": ("Change outside the edit", "mean change (0-255) of the pixels a partial swap should keep"),
    "first_stage_drift": ("Autoencoder's change there", "the same measure for the autoencoder alone: the floor"),
    "first_stage_preserved": ("The rest, autoencoder alone", "'the rest' scored on the autoencoder's encode-decode: "
                              "the ceiling"),
}
SHORT_NAMES = dict(zip(RATES, ("recon", "total", "partial", "preserved", "all", "all kept", "mixed", "interp",
                               "noise ratio")))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def write_json(data: dict, path: Path) -> None:
    """Indented JSON, with lists of numbers (and lists of those) on one line each, so that the
    per-face records stay short; written to a temporary file, then renamed."""
    from ..data.layout import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, default=float)
    for _ in range(2):  # numbers, then lists of number lists
        text = re.sub(r"\[\s+((?:[-+0-9.eE,\sNaInfity]|\[[^\[\]\"]*\])+?)\s+\]",
                      lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    write_text_atomic(path, text + "\n")


def synthetic_markdown(report: dict, command: str) -> str:
    lines = [
        "# Synthetic ground-truth benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Protocol: {report['n']} held-out synthetic test faces (indices 1,000,000 + k), target = face k, "
        "reference = face k + 1; a region succeeds when the mean colour of the generated image inside it "
        "(one-pixel erosion) is closer in RGB to the style it should have than to the alternative "
        "(see `scadm.eval.controllability`). Chance is 0.5. Standard errors treat the faces as "
        "independent clusters (regions within a face are not); the mIoU ratio's is a bootstrap over faces. "
        "They are approximate: face k + 1 is also the next pair's target. "
        f"Sampling: {report.get('sampling_desc', report.get('sampling'))}.",
        "",
        "| metric | value | standard error | target |",
        "| --- | --- | --- | --- |",
    ]
    errors = report.get("standard_errors", {})
    for key in (*RATES, "noise_miou", "real_miou", *FIDELITY):
        if key in report:
            target = THRESHOLDS.get(key)
            mark = "" if target is None else (f">= {target}" + (" (met)" if report[key] >= target else " (NOT met)"))
            se = f"{errors[key]:.3f}" if isinstance(errors.get(key), float) and not math.isnan(errors[key]) else ""
            lines.append(f"| {key} | {_fmt(report[key])} | {se} | {mark} |")
    for name in ("partial_swap_per_part", "partial_swap_preserved_per_part", "partial_swap_all_per_part",
                 "reconstruction_per_part"):
        if name in report:
            lines += ["", f"## {name.replace('_', ' ')}", "", "| part | rate | n |", "| --- | --- | --- |"]
            for part, rec in report[name].items():
                lines.append(f"| {part} | {rec['rate']:.3f} | {rec['n']} |")
    if "noise_iou_per_part" in report:
        lines += ["", "## noise-based: parser IoU per part", "", "| part | noise-based | real |", "| --- | --- | --- |"]
        for part, rec in report["noise_iou_per_part"].items():
            lines.append(f"| {part} | {_fmt(rec['noise'])} | {_fmt(rec['real'])} |")
    if "seconds" in report:
        lines += ["", "Time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["seconds"].items())]
    return "\n".join(lines) + "\n"


def plot_per_part(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(k, report[k]) for k in ("reconstruction_per_part", "partial_swap_per_part",
                                       "partial_swap_preserved_per_part") if k in report]
    if not series:
        return
    parts = sorted({p for _, s in series for p in s})
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=110)
    width = 0.8 / len(series)
    for j, (name, s) in enumerate(series):
        ax.bar([i + j * width for i in range(len(parts))], [s.get(p, {"rate": float("nan")})["rate"] for p in parts],
               width, label=name.replace("_per_part", "").replace("_", " "))
    ax.axhline(0.9, color="k", lw=0.8, ls="--")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(parts))], parts, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("success rate")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("per-part success (dashed: 0.9 target, dotted: chance)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out) + "\n"
