"""`scadm prepare celebamask-hq` and `scadm prepare folder` on small fixtures built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scadm.data.layout import read_attributes, read_split
from scadm.data.prepare import celebamask_split, prepare_celebamask_hq, read_id_list
from scadm.labels import ATTRIBUTE_NAMES, CELEBAMASK_HQ

IDS = [0, 1, 2, 3, 28000, 28001]
IMG, MASK = 96, 48


def run_cli(args: list[str]) -> int:
    from scadm.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _disk(n: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r


def build_raw(root: Path) -> Path:
    """A tiny CelebAMask-HQ release: 96 px images, 48 px masks; id 2 lacks its nose, id 3's
    image is garbage, id 28001's skin mask is garbage, id 1 has RGB masks."""
    (root / "CelebA-HQ-img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in IDS:
        path = root / "CelebA-HQ-img" / f"{k}.jpg"
        if k == 3:
            path.write_bytes(b"\xff\xd8garbage, not a jpeg")
        else:
            Image.fromarray(rng.integers(0, 255, (IMG, IMG, 3), dtype=np.uint8)).save(path, quality=90)
        folder = root / "CelebAMask-HQ-mask-anno" / str(k // 2000)
        folder.mkdir(parents=True, exist_ok=True)
        parts = {
            "skin": _disk(MASK, 24, 24, 18),
            "hair": _disk(MASK, 8, 24, 14),  # overlaps the skin's top: hair is painted later
            "nose": _disk(MASK, 26, 24, 3),
            "l_eye": _disk(MASK, 20, 31, 3),
            "r_eye": _disk(MASK, 20, 17, 3),
            "cloth": _disk(MASK, 60, 24, 16),
        }
        if k == 2:
            del parts["nose"]
        for part, m in parts.items():
            p = folder / f"{k:05d}_{part}.png"
            arr = (m * 255).astype(np.uint8)
            if k == 1:
                Image.fromarray(np.stack([arr, arr, arr], -1)).save(p)
            else:
                Image.fromarray(arr).save(p)
        if k == 28001:
            (folder / f"{k:05d}_skin.png").write_bytes(b"broken png")
    lines = [str(len(IDS)), " ".join(ATTRIBUTE_NAMES)]
    for k in IDS:
        vals = ["1" if (k + j) % 3 == 0 else "-1" for j in range(40)]
        lines.append(f"{k}.jpg " + " ".join(vals))
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def raw(tmp_path) -> Path:
    return build_raw(tmp_path / "raw")


def test_prepare_celebamask_hq_end_to_end(raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(["prepare", "celebamask-hq", str(raw), str(out), "--size", "32"]) == 0
    stdout = capsys.readouterr().out
    assert "prepared 4 ids" in stdout and "skipped 2" in stdout and "3.jpg" in stdout

    for k in (0, 1, 2, 28000):
        img = np.asarray(Image.open(out / "images" / f"{k}.png"))
        lab = np.asarray(Image.open(out / "labels" / f"{k}.png"))
        assert img.shape == (32, 32, 3) and lab.shape == (32, 32) and lab.dtype == np.uint8
        assert Image.open(out / "labels" / f"{k}.png").mode == "L"
    lab0 = np.asarray(Image.open(out / "labels" / "0.png"))
    hair, skin = CELEBAMASK_HQ.index("hair"), CELEBAMASK_HQ.index("skin")
    # Overlap of skin (centre 24, r 18) and hair (centre 8, r 14) at mask row 12 -> output row 8: hair wins.
    assert lab0[8, 16] == hair
    assert lab0[20, 16] in (skin, CELEBAMASK_HQ.index("nose"))
    assert CELEBAMASK_HQ.index("l_eye") in lab0[12:15, 19:23]  # person's left eye, image right
    assert CELEBAMASK_HQ.index("nose") in lab0 and CELEBAMASK_HQ.index("nose") not in np.asarray(Image.open(out / "labels" / "2.png"))
    assert np.array_equal(np.asarray(Image.open(out / "labels" / "1.png")), lab0)  # RGB masks read alike

    report = json.loads((out / "prepare-report.json").read_text())
    assert report["processed"] == 4
    skipped = {s["id"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {3, 28001}
    assert "3.jpg" in skipped[3] and "28001_skin.png" in skipped[28001]
    assert not (out / "images" / "3.png").exists()

    assert read_split(out, "train") == ["0", "1", "2"] and read_split(out, "test") == ["28000"]
    names, rows = read_attributes(out)
    assert names == list(ATTRIBUTE_NAMES) and set(rows) == {"0", "1", "2", "28000"}
    assert rows["1"][2] == 1.0 and rows["1"][0] == 0.0  # (1 + 2) % 3 == 0 -> 1, -1 -> 0
    assert json.loads((out / "labels.json").read_text())["classes"] == list(CELEBAMASK_HQ.names)


def test_rerun_skips_finished_ids(raw, tmp_path):
    out = tmp_path / "out"
    prepare_celebamask_hq(raw, out, size=16, progress=False)
    kept = out / "images" / "0.png"
    stamp = kept.stat().st_mtime_ns
    (out / "labels" / "2.png").unlink()
    rep = prepare_celebamask_hq(raw, out, size=16, progress=False)
    assert rep["processed"] == 4 and rep["newly_processed"] == 1 and rep["already_done"] == 3
    assert kept.stat().st_mtime_ns == stamp and (out / "labels" / "2.png").exists()
    # Another size into the same folder is refused rather than mixing sizes.
    assert run_cli(["prepare", "celebamask-hq", str(raw), str(out), "--size", "24"]) != 0
    assert not list(out.rglob("*.tmp"))


def test_parallel_matches_serial(raw, tmp_path):
    a = prepare_celebamask_hq(raw, tmp_path / "a", size=16, workers=1, progress=False)
    b = prepare_celebamask_hq(raw, tmp_path / "b", size=16, workers=2, progress=False)
    assert a["processed"] == b["processed"] == 4
    for k in (0, 28000):
        for sub in ("images", "labels"):
            assert (tmp_path / "a" / sub / f"{k}.png").read_bytes() == (tmp_path / "b" / sub / f"{k}.png").read_bytes()


def test_ldm_split_and_split_files(raw, tmp_path):
    assert celebamask_split([0, 24999, 25000, 29999], "ldm") == ([0, 24999], [25000, 29999])
    assert celebamask_split([0, 27999, 28000], "scadm") == ([0, 27999], [28000])
    tr, va = tmp_path / "train.txt", tmp_path / "val.txt"
    tr.write_text("0.jpg\n28000.jpg\n")
    va.write_text("1\n2\n")
    assert read_id_list(tr) == [0, 28000]
    out = tmp_path / "out"
    assert run_cli(["prepare", "celebamask-hq", str(raw), str(out), "--size", "16", "--split-files", str(tr), str(va)]) == 0
    assert read_split(out, "train") == ["0", "28000"] and read_split(out, "test") == ["1", "2"]


def test_out_inside_raw_refused(raw, capsys):
    assert run_cli(["prepare", "celebamask-hq", str(raw), str(raw / "prepared")]) != 0
    assert "inside the input" in capsys.readouterr().err
    assert not (raw / "prepared").exists()


def test_not_a_celebamask_root(tmp_path, capsys):
    (tmp_path / "something").mkdir()
    assert run_cli(["prepare", "celebamask-hq", str(tmp_path / "something"), str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert "not a CelebAMask-HQ release" in err and "CelebA-HQ-img" in err
    assert run_cli(["prepare", "celebamask-hq", str(tmp_path / "absent"), str(tmp_path / "o2")]) != 0


def test_nothing_prepared_is_an_error(tmp_path, capsys):
    raw = tmp_path / "raw"
    (raw / "CelebA-HQ-img").mkdir(parents=True)
    (raw / "CelebAMask-HQ-mask-anno").mkdir()
    (raw / "CelebA-HQ-img" / "5.jpg").write_bytes(b"junk")
    assert run_cli(["prepare", "celebamask-hq", str(raw), str(tmp_path / "o"), "--size", "16"]) != 0
    assert "nothing could be prepared" in capsys.readouterr().err
    report = json.loads((tmp_path / "o" / "prepare-report.json").read_text())
    assert report["processed"] == 0 and report["skipped"][0]["id"] == 5


# ---------------------------------------------------------------------------- folder
def build_folder(root: Path) -> tuple[Path, Path]:
    images, labels = root / "imgs", root / "labs"
    images.mkdir(parents=True)
    labels.mkdir()
    rng = np.random.default_rng(1)
    h, w = 24, 16  # non-square, DeepFashion-like portrait
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"img{i}.png")
        lab = (np.arange(h * w).reshape(h, w) % 19).astype(np.uint8)
        if i == 1:  # a colour mask in the palette
            Image.fromarray(CELEBAMASK_HQ.colorize(lab)).save(labels / f"img{i}.png")
        else:
            Image.fromarray(lab).save(labels / f"img{i}.png")
    rgba = np.dstack([rng.integers(0, 255, (h, w, 3), dtype=np.uint8), np.full((h, w), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(images / "alpha.png")
    Image.fromarray(np.zeros((h, w), np.uint8)).save(labels / "alpha.png")
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(images / "nolabel.png")
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(images / "wrongsize.png")
    Image.fromarray(np.zeros((h // 2, w), np.uint8)).save(labels / "wrongsize.png")
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(images / "badid.png")
    Image.fromarray(np.full((h, w), 30, np.uint8)).save(labels / "badid.png")
    (images / "corrupt.jpg").write_bytes(b"\x00" * 50)
    Image.fromarray(np.zeros((h, w), np.uint8)).save(labels / "corrupt.png")
    return images, labels


def test_prepare_folder_non_square_and_bad_inputs(tmp_path, capsys):
    images, labels = build_folder(tmp_path)
    out = tmp_path / "out"
    assert run_cli(["prepare", "folder", str(images), str(labels), str(out), "--test-fraction", "0.25"]) == 0
    captured = capsys.readouterr()
    assert "alpha.png" in captured.err and "transparency" in captured.err  # RGBA converted with a warning
    report = json.loads((out / "prepare-report.json").read_text())
    assert report["processed"] == 7  # img0..img5 + alpha
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"nolabel", "wrongsize", "badid", "corrupt"}
    assert "labs/nolabel.png" in reasons["nolabel"] and "missing" in reasons["nolabel"]
    assert "16x12" in reasons["wrongsize"] and "16x24" in reasons["wrongsize"]
    assert "label id 30" in reasons["badid"] and "badid.png" in reasons["badid"]
    assert "corrupt.jpg" in reasons["corrupt"]
    # Size kept (24 x 16); colour mask decoded to the same ids as the id map.
    lab0 = np.asarray(Image.open(out / "labels" / "img0.png"))
    assert lab0.shape == (24, 16)
    assert np.array_equal(np.asarray(Image.open(out / "labels" / "img1.png")), lab0)
    train, test = read_split(out, "train"), read_split(out, "test")
    assert len(test) == 2 and len(train) == 5 and not set(train) & set(test)


def test_prepare_folder_resize_and_label_set(tmp_path):
    images, labels = build_folder(tmp_path)
    for p in list(labels.iterdir()):
        if p.stem not in ("img0", "img2"):
            p.unlink()
        else:
            Image.fromarray((np.arange(24 * 16).reshape(24, 16) % 3).astype(np.uint8)).save(p)
    spec = tmp_path / "three.json"
    spec.write_text(json.dumps({"name": "three", "classes": ["bg", "top", "pants"]}))
    out = tmp_path / "out"
    assert run_cli(["prepare", "folder", str(images), str(labels), str(out), "--labels", str(spec), "--size", "12x8"]) == 0
    assert np.asarray(Image.open(out / "images" / "img0.png")).shape == (12, 8, 3)
    assert np.asarray(Image.open(out / "labels" / "img2.png")).shape == (12, 8)
    assert json.loads((out / "labels.json").read_text())["classes"] == ["bg", "top", "pants"]

    from scadm.data import FaceDataset

    ds = FaceDataset(out, split="train", one_hot=True)
    assert ds.num_classes == 3 and ds[0]["one_hot"].shape == (3, 12, 8)


def test_prepare_folder_empty_and_missing(tmp_path, capsys):
    (tmp_path / "i").mkdir()
    (tmp_path / "l").mkdir()
    assert run_cli(["prepare", "folder", str(tmp_path / "i"), str(tmp_path / "l"), str(tmp_path / "o")]) != 0
    assert "no images found" in capsys.readouterr().err
    assert run_cli(["prepare", "folder", str(tmp_path / "nope"), str(tmp_path / "l"), str(tmp_path / "o")]) != 0
    assert "nope" in capsys.readouterr().err
