"""What both training loops share: processes, per-sample randomness, sharding, EMA,
atomic checkpoints, logs and plots.

Determinism. Every random draw that shapes a sample's loss (its timestep, noise, style
dropout, flip) comes from a generator keyed by (seed, micro-step, position in the global
batch). So a run resumed from a checkpoint sees exactly the draws of an uninterrupted run,
and N processes that each take a slice of the global batch see exactly the draws of one
process taking all of it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------
def make_accelerator(mixed_precision: str = "auto"):
    """An accelerate Accelerator; works alone, under `torchrun` and under `accelerate launch` (gloo on CPU)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    if mixed_precision == "auto":
        mixed_precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if mixed_precision not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, not {mixed_precision!r}")
    # In the gather path the cross-attention q/k projections get no gradient (as in the released code).
    kwargs = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=mixed_precision, kwargs_handlers=[kwargs], cpu=not torch.cuda.is_available())


def sample_generator(seed: int, micro_step: int, position: int) -> torch.Generator:
    """The generator for one sample of one micro-step (see the module docstring)."""
    key = (int(seed) * 1_000_003 + int(micro_step)) * 65_537 + int(position)
    return torch.Generator().manual_seed(key % (2**63 - 1))


class GlobalBatchSampler:
    """Yields this process's slice of each global batch, epoch after epoch, from any micro-step.

    Epoch e visits a permutation drawn from (seed, e); a global batch is ``local_batch x
    world_size`` consecutive indices (an incomplete tail is dropped); process r gets slice r.
    """

    def __init__(self, n: int, local_batch: int, rank: int, world_size: int, seed: int, start: int = 0) -> None:
        self.n, self.local_batch, self.rank, self.world_size, self.seed = n, local_batch, rank, world_size, seed
        self.global_batch = local_batch * world_size
        self.per_epoch = n // self.global_batch
        if self.per_epoch == 0:
            raise ValueError(
                f"the training split has {n} samples, fewer than one global batch of {self.global_batch}; "
                "lower training.batch_size or add data"
            )
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            epoch, pos = divmod(k, self.per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
            lo = pos * self.global_batch + self.rank * self.local_batch
            yield perm[lo:lo + self.local_batch].tolist()
            k += 1

    def __len__(self) -> int:  # effectively infinite; DataLoader only needs it for len()
        return 2**62


# ---------------------------------------------------------------------------
# EMA
# ---------------------------------------------------------------------------
class EMA:
    """Exponential moving average of a module's parameters (LDM's LitEma, with its warm-up)."""

    def __init__(self, module: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        self.decay, self.warmup = decay, warmup
        self.num_updates = 0
        self.shadow = {k: p.detach().clone().float() for k, p in module.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.num_updates += 1
        d = self.current_decay()
        for k, p in module.named_parameters():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(p.detach().float(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for k, p in module.named_parameters():
            if k in self.shadow:
                p.copy_(self.shadow[k].to(p.dtype))

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, sd: dict[str, Tensor], num_updates: int) -> None:
        missing = set(self.shadow) - set(sd)
        if missing:
            raise ValueError(f"EMA checkpoint lacks {len(missing)} parameters (e.g. {sorted(missing)[:2]})")
        self.shadow = {k: sd[k].float().clone() for k in self.shadow}
        self.num_updates = num_updates


# ---------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------
class Checkpoints:
    """RUN/checkpoints/step-XXXXXXX folders, written atomically, the last k kept.

    A checkpoint is first written to a hidden temporary folder and renamed into place only
    when complete; a crash mid-write leaves the previous checkpoint untouched and loadable.
    """

    def __init__(self, run_dir: Path, keep_last: int = 3) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)

    def list(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("step-")
                      and (p / "state.json").is_file())

    def latest(self) -> Path | None:
        found = self.list()
        return found[-1] if found else None

    def save(self, step: int, tensors: dict[str, dict[str, Tensor]], objects: dict[str, Any], state: dict) -> Path:
        """tensors: file stem -> state dict (safetensors); objects: file stem -> torch-saveable (optimizer)."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:07d}"
        tmp = self.root / f".tmp-step-{step:07d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for stem, sd in tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in sd.items()}, str(tmp / f"{stem}.safetensors"))
        for stem, obj in objects.items():
            torch.save(obj, tmp / f"{stem}.pt")
        # state.json last: its presence marks a complete checkpoint
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self.list()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_latest(self) -> tuple[Path, dict[str, dict[str, Tensor]], dict[str, Any], dict]:
        """The newest complete checkpoint (for --resume): its path, tensors, objects and state."""
        latest = self.latest()
        if latest is None:
            raise FileNotFoundError(f"--resume: no checkpoint under {self.root}")
        return (latest, *self.load(latest))

    @staticmethod
    def load(path: Path) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any], dict]:
        path = Path(path)
        state_file = path / "state.json"
        if not state_file.is_file():
            raise FileNotFoundError(f"{path} is not a complete checkpoint (no state.json)")
        tensors = {p.stem: load_file(str(p)) for p in path.glob("*.safetensors")}
        objects = {p.stem: torch.load(p, map_location="cpu", weights_only=True) for p in path.glob("*.pt")}
        return tensors, objects, json.loads(state_file.read_text())


def _fsync_dir(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------
# learning rate
# ---------------------------------------------------------------------------
def warmup_factor(step: int, warmup_steps: int) -> float:
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


LR_DECAYS = ("none", "linear", "cosine")


def lr_factor(step: int, warmup_steps: int, max_steps: int, decay: str = "none") -> float:
    """The learning-rate multiplier at ``step`` (0-based): linear warm-up over ``warmup_steps``,
    then constant (``none``, LDM's recipe) or decaying to 0 at ``max_steps`` (``linear``, ``cosine``).
    A function of the step alone, so a resumed run follows the same schedule."""
    if decay not in LR_DECAYS:
        raise ValueError(f"training.lr_decay must be one of {', '.join(LR_DECAYS)}, got {decay!r}")
    f = warmup_factor(step, warmup_steps)
    if decay == "none" or step < warmup_steps:
        return f
    left = max(0.0, 1.0 - (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return f * (left if decay == "linear" else 0.5 * (1.0 - math.cos(math.pi * left)))


# ---------------------------------------------------------------------------
# logs and plots
# ---------------------------------------------------------------------------
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

    def plot(self, title: str) -> None:
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
        for col in self.columns:
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


def resolve_path(path: str | Path | None, base: Path | None = None) -> Path | None:
    """A path from a config: absolute as is; relative to the repository root when it exists there."""
    if path is None:
        return None
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    root = base or Path(__file__).resolve().parents[3]
    return root / p if (root / p).exists() else p


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
