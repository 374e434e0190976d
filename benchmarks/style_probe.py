"""How much of each region's colour a model's style tokens carry (a linear probe).

    python benchmarks/style_probe.py [--model src/scadm/bundled/synthetic-64] [--data data/synthetic-64] [--n 1200]

Encodes `n` synthetic training faces with the model's style encoder E_s, then fits, per class,
a ridge regression from the class's style token to the region's ground-truth base colour
(styles.json) on the first 80 % and reports the mean absolute error (0..255, per channel) on
the rest, next to the error of always answering the class's mean colour. A style encoder that
keeps the colour has a probe error near 0; one that loses it is near the constant's error.
This separates "E_s does not encode the style" from "the UNet does not use it" when the
synthetic benchmark's success rates are low.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from scadm.data.dataset import FaceDataset, one_hot
from scadm.eval.controllability import style_colors
from scadm.models.ldm import SemanticLDM


def collect(model: SemanticLDM, data: Path, n: int, batch: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, colours, classes) of every region present in the first n training faces."""
    styles = json.loads((data / "styles.json").read_text())
    ds = FaceDataset(data, split="train", flip=False)
    num_classes = ds.num_classes
    tokens, colours, classes = [], [], []
    with torch.no_grad():
        for start in range(0, min(n, len(ds)), batch):
            items = [ds[i] for i in range(start, min(start + batch, n, len(ds)))]
            labels = torch.stack([it["label"] for it in items])
            images = torch.stack([it["image"] for it in items])
            tok = model.conditions(one_hot(labels, num_classes), images).tokens  # (B, C, D) concat layout
            for b, it in enumerate(items):
                present = set(labels[b].unique().tolist())
                for c, colour in style_colors(styles[str(it["id"])]).items():
                    if c in present:
                        tokens.append(tok[b, c].numpy())
                        colours.append(colour)
                        classes.append(c)
    return np.array(tokens), np.array(colours, dtype=np.float64), np.array(classes)


def probe(tokens: np.ndarray, colours: np.ndarray, classes: np.ndarray, ridge: float = 0.1) -> dict[int, tuple[int, float, float]]:
    """{class: (test regions, probe MAE, constant MAE)} with an 80/20 split in order."""
    train = np.arange(len(tokens)) < int(0.8 * len(tokens))
    out = {}
    for c in np.unique(classes):
        a, b = (classes == c) & train, (classes == c) & ~train
        if a.sum() < 30 or b.sum() < 5:
            continue
        xa = np.c_[tokens[a], np.ones(a.sum())]
        w = np.linalg.solve(xa.T @ xa + ridge * np.eye(xa.shape[1]), xa.T @ colours[a])
        pred = np.c_[tokens[b], np.ones(b.sum())] @ w
        out[int(c)] = (int(b.sum()), float(np.abs(pred - colours[b]).mean()),
                       float(np.abs(colours[a].mean(0) - colours[b]).mean()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("src/scadm/bundled/synthetic-64"))
    ap.add_argument("--data", type=Path, default=Path("data/synthetic-64"))
    ap.add_argument("--n", type=int, default=1200, help="training faces to encode")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = SemanticLDM.from_pretrained(args.model).eval()
    if not model.cfg.conditioning.style_encoder or model.cfg.conditioning.style_encoder.layout != "concat":
        raise SystemExit(f"{args.model}: the probe needs a style-conditioned model with the concat token layout")
    names = model.label_set.names
    rows = probe(*collect(model, args.data, args.n))
    print(f"{'class':<12}{'n':>5}{'probe MAE':>11}{'const MAE':>11}")
    for c, (n, e, base) in rows.items():
        print(f"{names[c]:<12}{n:>5}{e:>11.1f}{base:>11.1f}")
    print(f"{'mean':<12}{'':>5}{np.mean([r[1] for r in rows.values()]):>11.1f}{np.mean([r[2] for r in rows.values()]):>11.1f}")


if __name__ == "__main__":
    main()
