"""Convert raw data sets into the canonical layout (:mod:`scadm.data.layout`).

* :func:`prepare_celebamask_hq` - the raw CelebAMask-HQ release: merges the per-part masks
  in the standard order, resizes images (bicubic, antialiased) and labels (nearest) to
  ``size``, converts the attribute file, writes the SCA-DM or LDM split.
* :func:`prepare_folder` - already-merged id maps (or colour masks in a label set's
  palette) next to their images, e.g. Multi-Modal CelebA-HQ, DeepFashion, a user's data.

Both run in parallel (``workers``), show a progress bar and are resumable: every output
file is written atomically (temp file + ``os.replace``), so an existing file is complete
and a rerun skips ids whose image and label both exist. A bad input (missing, truncated or
corrupt image, unreadable mask, size mismatch, out-of-range id) skips that id only; the
reason is listed in ``OUT/prepare-report.json`` and the run still succeeds. Raw inputs are
never written to.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from ..labels import CELEBAMASK_HQ, CELEBAMASK_HQ_PART_ORDER, LabelSet, get_label_set
from ..tempfiles import remove_stale
from .layout import (
    IMAGE_EXTENSIONS,
    load_image,
    load_mask_file,
    open_image,
    parse_size,
    save_png,
    write_attributes,
    write_split,
    write_text_atomic,
)

__all__ = [
    "prepare_celebamask_hq",
    "prepare_folder",
    "celebamask_split",
    "read_id_list",
    "PrepareError",
]

IMG_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
ATTR_FILE = "CelebAMask-HQ-attribute-anno.txt"
_MAX_SHOWN_WARNINGS = 20


class PrepareError(ValueError):
    """Nothing could be prepared, or the inputs are not what the command expects."""


# ---------------------------------------------------------------------------- shared helpers
def _check_out(out: Path, inputs: Sequence[Path], manifest: dict) -> None:
    """Refuse an OUT inside an input, or a non-empty OUT prepared with other settings."""
    out_r = out.resolve()
    for src in inputs:
        src_r = src.resolve()
        if out_r == src_r or src_r in out_r.parents:
            raise PrepareError(f"{out}: output folder is inside the input {src}; choose an OUT outside it (inputs are never written to)")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory; choose another OUT")
    if out.is_dir() and any(out.iterdir()):
        man = out / "prepare.json"
        old = json.loads(man.read_text()) if man.is_file() else None
        if old != manifest:
            what = f"prepared with other settings ({old})" if old else "not a `scadm prepare` output"
            raise FileExistsError(f"{out} is not empty and is {what}; give an empty or new OUT (nothing was overwritten)")


def _run(
    func: Callable[[tuple], dict], jobs: list[tuple], workers: int, desc: str, progress: bool
) -> list[dict]:
    """Run ``func`` over ``jobs`` (in a process pool when workers > 1) with a progress bar."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=desc, unit="img", dynamic_ncols=True)
    results: list[dict] = []
    try:
        if workers > 1 and len(jobs) > 1:
            with multiprocessing.get_context().Pool(workers) as pool:
                for res in pool.imap_unordered(func, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))):
                    results.append(res)
                    if bar:
                        bar.update()
        else:
            for job in jobs:
                results.append(func(job))
                if bar:
                    bar.update()
    finally:
        if bar:
            bar.close()
    return results


def _guard(job_key: str, body: Callable[[], None]) -> dict:
    """Run one id's work; turn a bad-input error into a skip record and collect warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = body()
            res = {"id": job_key, "status": status or "done"}
        except (ValueError, FileNotFoundError, OSError) as exc:
            res = {"id": job_key, "status": "skipped", "reason": str(exc)}
    # data warnings only: Python's own (unclosed files, deprecations) are not the user's business
    res["warnings"] = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return res


def _summarise(out: Path, results: list[dict], extra: dict) -> dict:
    """Write prepare-report.json and re-emit worker warnings (the first few) in this process."""
    results = sorted(results, key=lambda r: _num_key(r["id"]))
    ok = [r["id"] for r in results if r["status"] != "skipped"]
    skipped = [{"id": _id_value(r["id"]), "reason": r["reason"]} for r in results if r["status"] == "skipped"]
    warns = [w for r in results for w in r["warnings"]]
    for w in warns[:_MAX_SHOWN_WARNINGS]:
        warnings.warn(w, UserWarning, stacklevel=3)
    if len(warns) > _MAX_SHOWN_WARNINGS:
        warnings.warn(f"... and {len(warns) - _MAX_SHOWN_WARNINGS} more warnings, see {out / 'prepare-report.json'}", UserWarning, stacklevel=3)
    report = {
        "processed": len(ok),
        "newly_processed": sum(r["status"] == "done" for r in results),
        "already_done": sum(r["status"] == "exists" for r in results),
        "skipped": skipped,
        "warnings": warns,
        **extra,
    }
    write_text_atomic(out / "prepare-report.json", json.dumps(report, indent=2) + "\n")
    report["ok_ids"] = ok
    return report


def _num_key(key: str) -> tuple:
    return (0, int(key), "") if str(key).isdigit() else (1, 0, str(key))


def _id_value(key: str) -> int | str:
    return int(key) if str(key).isdigit() else key


def _outputs_exist(out: Path, key: str) -> bool:
    return (out / "images" / f"{key}.png").is_file() and (out / "labels" / f"{key}.png").is_file()


def _resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    if image.shape[:2] == (h, w):
        return image
    # Pillow's BICUBIC resize widens its kernel when downscaling, i.e. it is antialiased.
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))


def _resize_label(label: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    if label.shape[:2] == (h, w):
        return label
    return np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))


def _write_pair(out: Path, key: str, image: np.ndarray, label: np.ndarray) -> None:
    # Label first, image last: resume treats an id as finished only when both exist.
    save_png(label, out / "labels" / f"{key}.png")
    save_png(image, out / "images" / f"{key}.png")


def read_id_list(path: str | Path) -> list[int]:
    """Integer ids from a split file with one ``k`` or ``k.jpg`` (or a path ending in it) per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file does not exist")
    ids = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        stem = Path(line.split()[0]).name.split(".")[0]
        if not stem.isdigit():
            raise ValueError(f"{path}:{lineno}: expected an image id such as 28000 or 28000.jpg, got {line!r}")
        ids.append(int(stem))
    return ids


# ---------------------------------------------------------------------------- CelebAMask-HQ
def _check_celeba_root(raw: Path) -> None:
    expected = (
        f"expected {IMG_DIR}/<k>.jpg, {MASK_DIR}/<k // 2000>/<k:05d>_<part>.png and {ATTR_FILE} "
        "(the unpacked CelebAMask-HQ release)"
    )
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw}: folder does not exist; {expected}")
    missing = [d for d in (IMG_DIR, MASK_DIR) if not (raw / d).is_dir()]
    if missing:
        raise PrepareError(f"{raw}: not a CelebAMask-HQ release (missing {', '.join(missing)}/); {expected}")


def _read_celeba_attributes(path: Path) -> tuple[list[str], dict[int, np.ndarray]]:
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise PrepareError(f"{path}: expected a count line, a line of 40 attribute names, then one line per image")
    names = lines[1].split()
    rows: dict[int, np.ndarray] = {}
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise PrepareError(f"{path}:{lineno}: expected an image name and {len(names)} values, got {len(parts)} fields")
        stem = parts[0].split(".")[0]
        if not stem.isdigit():
            raise PrepareError(f"{path}:{lineno}: expected '<k>.jpg' as the first field, got {parts[0]!r}")
        try:
            vals = np.array([int(v) for v in parts[1:]])
        except ValueError:
            raise PrepareError(f"{path}:{lineno}: attribute values must be 1 or -1") from None
        rows[int(stem)] = (vals > 0).astype(np.uint8)
    return names, rows


def _merge_parts(k: int, mask_root: Path) -> np.ndarray | None:
    """Paint the part files of image k in the standard order (later overwrite earlier)."""
    folder = mask_root / str(k // 2000)
    label = None
    for cid, part in enumerate(CELEBAMASK_HQ_PART_ORDER, start=1):
        p = folder / f"{k:05d}_{part}.png"
        if not p.is_file():
            continue  # a missing part file means the part is absent
        try:
            img = open_image(p)
        except ValueError as exc:
            raise ValueError(f"unreadable mask: {exc}") from None
        arr = np.asarray(img)
        if arr.ndim == 3:  # RGB(A) masks: any colour channel set = part
            arr = arr[..., :3].any(axis=2)
        on = arr > 0
        if label is None:
            label = np.zeros(on.shape, dtype=np.uint8)
        if on.shape != label.shape:
            on = np.asarray(Image.fromarray(on.astype(np.uint8) * 255).resize(label.shape[::-1], Image.NEAREST)) > 0
        label[on] = cid
    return label


def _celeba_job(job: tuple) -> dict:
    k, img_path, mask_root, out, hw = job
    key = str(k)

    def body() -> str | None:
        if _outputs_exist(out, key):
            return "exists"
        image = load_image(img_path)
        label = _merge_parts(k, mask_root)
        if label is None:
            raise FileNotFoundError(
                f"no mask files for id {k} (expected {mask_root / str(k // 2000) / f'{k:05d}_<part>.png'})"
            )
        # Images (1024 px) and masks (512 px) legitimately differ in the release: resize both.
        _write_pair(out, key, _resize_image(image, hw), _resize_label(label, hw))
        return None

    return _guard(key, body)


def celebamask_split(ids: Iterable[int], split: str = "scadm", split_files: Sequence[str | Path] | None = None) -> tuple[list[int], list[int]]:
    """(train, test) ids. ``scadm``: test = 28000-29999. ``ldm``: test (LDM's "validation") =
    25000-29999, an index-based stand-in with the sizes of LDM's lists; ``split_files`` =
    (train.txt, val.txt) reproduces given lists exactly."""
    ids = sorted(set(int(i) for i in ids))
    if split_files:
        if len(split_files) != 2:
            raise ValueError("--split-files needs two files: TRAIN_TXT VAL_TXT")
        tr, te = set(read_id_list(split_files[0])), set(read_id_list(split_files[1]))
        return [i for i in ids if i in tr], [i for i in ids if i in te]
    if split == "scadm":
        lo = 28000
    elif split == "ldm":
        lo = 25000
    else:
        raise ValueError(f"unknown split {split!r}; use 'scadm' (test 28000-29999) or 'ldm' (25k/5k)")
    return [i for i in ids if i < lo], [i for i in ids if lo <= i < 30000]


def _remove_debris(out: Path) -> None:
    """Half-written files of a killed earlier run into `out` (see scadm.tempfiles)."""
    for folder in (out, out / "images", out / "labels", out / "splits"):
        remove_stale(folder)


def prepare_celebamask_hq(
    raw_root: str | Path,
    out: str | Path,
    size: int | str | Sequence[int] = 256,
    split: str = "scadm",
    workers: int = 1,
    split_files: Sequence[str | Path] | None = None,
    progress: bool = True,
) -> dict:
    """Prepare the raw CelebAMask-HQ release at ``raw_root`` into ``out``; returns the report.

    Output ids are the CelebA-HQ indices without padding (``images/28000.png``).
    Raises :class:`PrepareError` when ``raw_root`` is not a release or nothing could be prepared.
    """
    raw, out = Path(raw_root), Path(out)
    hw = parse_size(size)
    _check_celeba_root(raw)
    if split not in ("scadm", "ldm"):
        raise ValueError(f"unknown split {split!r}; use 'scadm' (test 28000-29999) or 'ldm' (25k/5k)")
    manifest = {"source": "celebamask-hq", "size": list(hw)}
    _check_out(out, [raw], manifest)

    found: dict[int, Path] = {}
    for p in (raw / IMG_DIR).iterdir():
        m = re.fullmatch(r"(\d+)\.(jpg|jpeg|png)", p.name, flags=re.IGNORECASE)
        if m:
            found.setdefault(int(m.group(1)), p)
    attr_path = raw / ATTR_FILE
    attr_names, attrs = (None, {})
    if attr_path.is_file():
        attr_names, attrs = _read_celeba_attributes(attr_path)
    else:
        warnings.warn(f"{attr_path} not found; writing no attributes.csv", UserWarning, stacklevel=2)
    # Ids listed in the attribute file but without an image are reported, not silently dropped.
    ids = sorted(set(found) | set(attrs))
    if not ids:
        raise PrepareError(f"{raw / IMG_DIR}: no images named <k>.jpg; is this the CelebAMask-HQ release?")

    out.mkdir(parents=True, exist_ok=True)
    _remove_debris(out)
    write_text_atomic(out / "prepare.json", json.dumps(manifest, indent=2) + "\n")
    jobs = [(k, found.get(k, raw / IMG_DIR / f"{k}.jpg"), raw / MASK_DIR, out, hw) for k in ids]
    results = _run(_celeba_job, jobs, workers, "celebamask-hq", progress)
    report = _summarise(out, results, {"source": str(raw), "size": list(hw), "split": "files" if split_files else split})
    ok = [int(k) for k in report["ok_ids"]]
    if not ok:
        raise PrepareError(f"nothing could be prepared from {raw}; see {out / 'prepare-report.json'} for the reasons")

    CELEBAMASK_HQ.save(out / "labels.json")
    train, test = celebamask_split(ok, split, split_files)
    write_split(out, "train", [str(i) for i in train])
    write_split(out, "test", [str(i) for i in test])
    if attr_names is not None:
        rows = {str(k): attrs[k] for k in ok if k in attrs}
        missing = [k for k in ok if k not in attrs]
        if missing:
            warnings.warn(f"{attr_path}: no attributes for {len(missing)} ids (e.g. {missing[:5]})", UserWarning, stacklevel=2)
        write_attributes(out, rows, attr_names)
    return report


# ---------------------------------------------------------------------------- folder
def _folder_job(job: tuple) -> dict:
    key, img_path, lab_path, out, hw, label_set = job

    def body() -> str | None:
        if _outputs_exist(out, key):
            return "exists"
        if not lab_path.is_file():
            raise FileNotFoundError(f"{lab_path}: label file for image {img_path.name} is missing")
        image = load_image(img_path)
        label = load_mask_file(lab_path, label_set)
        if image.shape[:2] != label.shape[:2]:
            raise ValueError(
                f"{lab_path}: label map is {label.shape[1]}x{label.shape[0]} (WxH) but image {img_path} is "
                f"{image.shape[1]}x{image.shape[0]}; they must match"
            )
        if hw is not None:
            image, label = _resize_image(image, hw), _resize_label(label, hw)
        _write_pair(out, key, image, label)
        return None

    return _guard(key, body)


def prepare_folder(
    images: str | Path,
    labels: str | Path,
    out: str | Path,
    label_set: LabelSet | str | Path | None = None,
    size: int | str | Sequence[int] | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Prepare ``images/<id>.<ext>`` + ``labels/<id>.png`` (id maps or palette colour masks) into ``out``.

    ``size`` None keeps each image's own size (non-square such as 256x384 stays so); an int
    gives S x S, "HxW" or (H, W) an exact size. The test split is a seeded random
    ``test_fraction`` of the prepared ids.
    """
    images, labels, out = Path(images), Path(labels), Path(out)
    ls = get_label_set(label_set)
    hw = None if size is None else parse_size(size)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    for d, what in ((images, "IMAGES"), (labels, "LABELS")):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: {what} folder does not exist")
    manifest = {"source": "folder", "size": None if hw is None else list(hw), "labels": ls.to_dict()}
    _check_out(out, [images, labels], manifest)

    by_key: dict[str, Path] = {}
    for p in sorted(images.iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith("."):
            if p.stem in by_key:
                raise PrepareError(f"{images}: two images share the id {p.stem!r} ({by_key[p.stem].name}, {p.name}); rename one")
            by_key[p.stem] = p
    if not by_key:
        raise PrepareError(f"{images}: no images found (expected <id>{'|'.join(IMAGE_EXTENSIONS)} files)")

    out.mkdir(parents=True, exist_ok=True)
    _remove_debris(out)
    write_text_atomic(out / "prepare.json", json.dumps(manifest, indent=2) + "\n")
    jobs = [(k, p, labels / f"{k}.png", out, hw, ls) for k, p in by_key.items()]
    results = _run(_folder_job, jobs, workers, "folder", progress)
    report = _summarise(out, results, {"source": str(images), "size": None if hw is None else list(hw)})
    ok = report["ok_ids"]
    if not ok:
        raise PrepareError(f"nothing could be prepared from {images}; see {out / 'prepare-report.json'} for the reasons")
    ls.save(out / "labels.json")
    order = sorted(ok, key=_num_key)
    n_test = int(round(len(order) * test_fraction))
    pick = set(np.random.default_rng(seed).permutation(len(order))[:n_test].tolist())
    write_split(out, "train", [k for i, k in enumerate(order) if i not in pick])
    write_split(out, "test", [k for i, k in enumerate(order) if i in pick])
    return report
