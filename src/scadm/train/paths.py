"""Paths named in a recipe: where a relative one is looked for."""

from __future__ import annotations

from pathlib import Path


def resolve_path(path: str | Path | None, base: Path | None = None) -> Path | None:
    """A path from a config: absolute as is; relative to the repository root when it exists there."""
    if path is None:
        return None
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    root = base or Path(__file__).resolve().parents[3]
    return root / p if (root / p).exists() else p
