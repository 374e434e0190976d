"""Data: procedural synthetic faces, the canonical dataset layout, preparation of
CelebAMask-HQ and custom folders, and the torch Dataset (see docs/data.md).

Names are imported lazily so that `scadm synth` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it (relative to this package)
_EXPORTS = {
    "FaceDataset": ".dataset",
    "load_mask_file": ".layout",
    "one_hot": ".dataset",
    "resize_pair": ".dataset",
    "DatasetLayout": ".layout",
    "DataWarning": ".layout",
    "load_image": ".layout",
    "load_label": ".layout",
    "parse_size": ".layout",
    "read_attributes": ".layout",
    "read_split": ".layout",
    "write_split": ".layout",
    "PrepareError": ".prepare",
    "prepare_celebamask_hq": ".prepare",
    "prepare_folder": ".prepare",
    "ATTRIBUTE_NAMES": "..labels",
    "SyntheticFace": ".synthetic",
    "render_face": ".synthetic",
    "synthetic_split_ids": ".synthetic",
    "write_synthetic_dataset": ".synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
