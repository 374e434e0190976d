"""Synthetic faces: determinism, class coverage, part sizes, style ground truth, CLI output."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from scadm.data.layout import parse_size
from scadm.data.synthetic import (
    TEST_OFFSET,
    SyntheticFace,
    render_face,
    synthetic_split_ids,
    write_synthetic_dataset,
)
from scadm.labels import ATTRIBUTE_NAMES, CELEBAMASK_HQ

ALWAYS = ["background", "skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
          "mouth", "u_lip", "l_lip", "neck", "cloth"]


def run_cli(args: list[str]) -> int:
    from scadm.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def faces() -> list[SyntheticFace]:
    return [render_face(i, seed=0, size=64) for i in range(300)]


def test_attribute_names():
    assert len(ATTRIBUTE_NAMES) == 40 and len(set(ATTRIBUTE_NAMES)) == 40
    assert ATTRIBUTE_NAMES[0] == "5_o_Clock_Shadow" and ATTRIBUTE_NAMES[-1] == "Young"
    assert ATTRIBUTE_NAMES.index("Male") == 20


def test_deterministic_per_seed_and_index():
    a, b = render_face(7, seed=3), render_face(7, seed=3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert np.array_equal(a.attributes, b.attributes) and a.styles == b.styles
    # Rendering other faces in between (or a different seed) does not change face 7.
    render_face(8, seed=3)
    assert np.array_equal(render_face(7, seed=3).image, a.image)
    assert not np.array_equal(render_face(7, seed=4).image, a.image)
    assert not np.array_equal(render_face(6, seed=3).image, a.image)


def test_types_and_shapes():
    f = render_face(0)
    assert f.image.shape == (64, 64, 3) and f.image.dtype == np.uint8
    assert f.label.shape == (64, 64) and f.label.dtype == np.uint8
    assert f.attributes.shape == (40,) and set(np.unique(f.attributes)) <= {0, 1}
    assert int(f.label.max()) < 19


def test_class_coverage_and_sizes(faces):
    seen = np.zeros(19, dtype=int)
    for f in faces:
        counts = np.bincount(f.label.ravel(), minlength=19)
        seen += counts > 0
        for name in ALWAYS:
            assert counts[CELEBAMASK_HQ.index(name)] > 0, name
        # Every present part is big enough to survive an f=4 autoencoder.
        assert counts[counts > 0].min() >= 6
        # Styles are recorded exactly for the present classes.
        assert set(f.styles) == {CELEBAMASK_HQ.names[c] for c in np.nonzero(counts)[0]}
    assert (seen > 0).all(), dict(zip(CELEBAMASK_HQ.names, seen))
    # Optional parts appear at plausible frequencies.
    for name, lo, hi in (("eye_g", 0.1, 0.3), ("hat", 0.07, 0.25), ("ear_r", 0.15, 0.35), ("neck_l", 0.1, 0.3)):
        frac = seen[CELEBAMASK_HQ.index(name)] / len(faces)
        assert lo < frac < hi, (name, frac)


def test_eye_width_and_side_convention(faces):
    le, re = CELEBAMASK_HQ.index("l_eye"), CELEBAMASK_HQ.index("r_eye")
    for f in faces[:50]:
        cols_l = np.nonzero((f.label == le).any(0))[0]
        cols_r = np.nonzero((f.label == re).any(0))[0]
        assert len(cols_l) >= 7 and len(cols_r) >= 7
        # The person's left eye is on the image right.
        assert cols_l.mean() > cols_r.mean()


def test_thin_parts_thickness(faces):
    """Lips and brows are >= ~4 px thick at 64 px (measured as max column run)."""
    for name in ("u_lip", "l_lip", "l_brow", "r_brow"):
        c = CELEBAMASK_HQ.index(name)
        for f in faces[:40]:
            col_heights = (f.label == c).sum(0)
            assert col_heights.max() >= 4, (name, col_heights.max())


def test_region_mean_colour_matches_style(faces):
    for f in faces[:60]:
        for name, st in f.styles.items():
            mask = f.label == CELEBAMASK_HQ.index(name)
            if mask.sum() < 20:
                continue
            mean = f.image[mask].astype(float).mean(0)
            assert np.abs(mean - np.array(st["color"])).max() < 4.0, (name, mean, st)
            assert st["class"] == name and st["texture"] in ("flat", "gradient", "stripes", "noise")


def test_eyes_styled_independently(faces):
    diff = sum(f.styles["l_eye"]["color"] != f.styles["r_eye"]["color"] for f in faces[:50])
    assert diff >= 45


def test_attributes_follow_factors(faces):
    idx = {n: i for i, n in enumerate(ATTRIBUTE_NAMES)}
    for f in faces:
        present = set(np.unique(f.label).tolist())
        assert f.attributes[idx["Eyeglasses"]] == (CELEBAMASK_HQ.index("eye_g") in present)
        assert f.attributes[idx["Wearing_Hat"]] == (CELEBAMASK_HQ.index("hat") in present)
        assert f.attributes[idx["Wearing_Earrings"]] == (CELEBAMASK_HQ.index("ear_r") in present)
        assert f.attributes[idx["Wearing_Necklace"]] == (CELEBAMASK_HQ.index("neck_l") in present)
        if f.attributes[idx["Bald"]]:
            assert CELEBAMASK_HQ.index("hair") not in present
        assert f.attributes[idx["Male"]] == 0


@pytest.mark.parametrize("size", [128, (64, 96), "96x64", 256])
def test_other_sizes(size):
    f = render_face(5, size=size)
    h, w = parse_size(size)
    assert f.image.shape == (h, w, 3) and f.label.shape == (h, w)
    present = set(np.unique(f.label).tolist())
    for name in ALWAYS:
        assert CELEBAMASK_HQ.index(name) in present, (size, name)


def test_geometry_scales_with_size():
    a, b = render_face(11, size=64), render_face(11, size=128)
    fa = np.bincount(a.label.ravel(), minlength=19) / a.label.size
    fb = np.bincount(b.label.ravel(), minlength=19) / b.label.size
    assert np.abs(fa - fb).max() < 0.02


def test_parse_size_errors():
    assert parse_size("64x96") == (64, 96)
    with pytest.raises(ValueError, match="not understood"):
        parse_size("big")


def test_splits_disjoint():
    tr, te = synthetic_split_ids("train", 100), synthetic_split_ids("test", 100)
    assert not set(tr) & set(te) and te[0] == TEST_OFFSET
    with pytest.raises(ValueError):
        synthetic_split_ids("dev", 3)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_synth_cli_byte_identical_and_refuses_overwrite(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(["synth", "--n", "12", "--size", "32x48", "--seed", "5", "--out", str(a), "--test-fraction", "0.25"]) == 0
    assert run_cli(["synth", "--n", "12", "--size", "32x48", "--seed", "5", "--out", str(b), "--test-fraction", "0.25"]) == 0
    ha, hb = _hashes(a), _hashes(b)
    assert ha == hb
    assert "styles.json" in ha and "labels.json" in ha and "attributes.csv" in ha
    assert len([k for k in ha if k.startswith("images/")]) == 12
    assert (a / "splits" / "test.txt").read_text().split() == [str(TEST_OFFSET + i) for i in range(3)]
    # Rerun with the same arguments resumes (a deleted image is re-created identically).
    (a / "images" / "4.png").unlink()
    assert run_cli(["synth", "--n", "12", "--size", "32x48", "--seed", "5", "--out", str(a), "--test-fraction", "0.25"]) == 0
    assert _hashes(a) == hb
    # Other arguments, or a foreign non-empty folder: refused, nothing changed.
    assert run_cli(["synth", "--n", "13", "--size", "32x48", "--seed", "5", "--out", str(a)]) != 0
    assert _hashes(a) == hb
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert run_cli(["synth", "--n", "2", "--out", str(other)]) != 0
    assert (other / "keep.txt").read_text() == "x"


def test_write_synthetic_dataset_api(tmp_path):
    from scadm.data import FaceDataset

    out = write_synthetic_dataset(tmp_path / "d", n=6, size=32, seed=1, test_fraction=0.5, progress=False)
    ds = FaceDataset(out, split="test")
    assert len(ds) == 3
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["attributes"].shape == (40,)
    face = render_face(int(item["id"]), seed=1, size=32)
    assert np.array_equal(item["label"].numpy(), face.label)
