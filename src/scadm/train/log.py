"""What a run reports while it trains: loss.csv, loss.png and TensorBoard scalars, and the progress bar."""

from __future__ import annotations

import csv
import math
from pathlib import Path


class TrainLog:
    """loss.csv (appended, survives resume), loss.png and TensorBoard scalars; main process only."""

    def __init__(self, run_dir: Path, enabled: bool, columns: list[str]) -> None:
        self.run_dir, self.enabled, self.columns = Path(run_dir), enabled, columns
        self.csv = self.run_dir / "loss.csv"
        self._tb = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except Exception:  # noqa: BLE001 - TensorBoard is a convenience, never a blocker
                self._tb = None

    def truncate_after(self, step: int) -> None:
        """On resume: drop rows logged after the checkpoint, so the curve has no duplicates."""
        if not (self.enabled and self.csv.is_file()):
            return
        rows = list(csv.DictReader(self.csv.open()))
        keep = [r for r in rows if int(r["step"]) <= step]
        self._write(keep)

    def _write(self, rows: list[dict]) -> None:
        with self.csv.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["step", *self.columns])
            w.writeheader()
            w.writerows(rows)

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.csv.is_file()
        fields = ["step", *self.columns]
        if not new:  # a run resumed by a newer version keeps its file's columns
            with self.csv.open() as fh:
                fields = next(csv.reader(fh), fields)
        with self.csv.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({"step": step, **{k: f"{values.get(k, float('nan')):.6g}" for k in self.columns}})
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)

    def plot(self, title: str, columns: list[str] | None = None) -> None:
        """loss.png: the logged `columns` (default: all) against the step, log scale."""
        if not (self.enabled and self.csv.is_file()):
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = list(csv.DictReader(self.csv.open()))
        if not rows:
            return
        steps = [int(r["step"]) for r in rows]
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
        for col in columns or self.columns:
            ys = [float(r.get(col) or "nan") for r in rows]
            if all(math.isnan(y) for y in ys):
                continue
            ax.plot(steps, ys, label=col, alpha=0.5, lw=0.8)
            if len(ys) >= 10:  # a running mean makes the trend readable
                k = max(5, len(ys) // 20)
                sm = [sum(ys[max(0, i - k + 1):i + 1]) / len(ys[max(0, i - k + 1):i + 1]) for i in range(len(ys))]
                ax.plot(steps, sm, lw=1.6, label=f"{col} (mean of {k})")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.run_dir / "loss.png")
        plt.close(fig)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="step", dynamic_ncols=True,
                smoothing=0.05)


class TrainingDiverged(ValueError):
    """A training loss became nan or inf: the run stops before the bad step is applied or exported."""


def check_finite(values: dict[str, float], step: int, run_dir: Path) -> None:
    """Stop the run (one line, nothing exported) when a logged loss is not finite."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        what = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise TrainingDiverged(
            f"training diverged at step {step} ({what}); the step was not applied and nothing was exported; "
            f"checkpoints in {run_dir} are kept: lower the learning rate or set grad_clip, then --resume"
        )
