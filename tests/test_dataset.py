"""FaceDataset, transforms (flip with left/right swap, resize, one-hot) and input validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scadm.data.dataset import FaceDataset, load_mask_file, one_hot
from scadm.data.layout import DataWarning, DatasetLayout, load_image, load_label, read_split
from scadm.data.synthetic import write_synthetic_dataset
from scadm.labels import CELEBAMASK_HQ, LabelSet


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("ds") / "synth", n=8, size=32, seed=2, test_fraction=0.25, progress=False)


def make_dataset(root: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray], split: str = "train") -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for k, a in images.items():
        Image.fromarray(a).save(root / "images" / f"{k}.png")
    for k, a in labels.items():
        Image.fromarray(a).save(root / "labels" / f"{k}.png")
    (root / "splits" / f"{split}.txt").write_text("".join(f"{k}\n" for k in images))
    return root


def test_item_format(synth_root):
    ds = FaceDataset(synth_root, split="train", one_hot=True)
    assert len(ds) == 6 and ds.flip is True
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 32, 32)
    assert -1.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["label"].dtype == torch.int64 and item["label"].shape == (32, 32)
    assert item["one_hot"].shape == (19, 32, 32)
    assert torch.equal(item["one_hot"].argmax(0), item["label"])
    assert item["attributes"].shape == (40,) and item["attributes"].dtype == torch.float32
    assert isinstance(item["id"], str)
    assert FaceDataset(synth_root, split="test").flip is False
    assert "attributes" not in FaceDataset(synth_root, split="test", with_attributes=False)[0]


def test_resize(synth_root):
    item = FaceDataset(synth_root, split="test", size=(16, 24))[0]
    assert item["image"].shape == (3, 16, 24) and item["label"].shape == (16, 24)
    assert int(item["label"].max()) < 19


def test_flip_swaps_left_right_classes(synth_root):
    plain = FaceDataset(synth_root, split="train", flip=False)
    flipped = FaceDataset(synth_root, split="train", flip=True)
    torch.manual_seed(0)
    n_flipped = 0
    perm = torch.as_tensor(CELEBAMASK_HQ.flip_permutation())
    for i in range(len(plain)):
        a, b = plain[i], flipped[i]
        if torch.equal(a["image"], b["image"]):
            continue
        n_flipped += 1
        assert torch.equal(b["image"], a["image"].flip(-1))
        assert torch.equal(b["label"], perm[a["label"].flip(-1)])
        # l_eye pixels of the flipped face are where r_eye pixels were, mirrored.
        le, re = CELEBAMASK_HQ.index("l_eye"), CELEBAMASK_HQ.index("r_eye")
        assert torch.equal(b["label"] == le, (a["label"] == re).flip(-1))
        for x, y in (("l_brow", "r_brow"), ("l_ear", "r_ear")):
            assert torch.equal(b["label"] == CELEBAMASK_HQ.index(x), (a["label"] == CELEBAMASK_HQ.index(y)).flip(-1))
    assert n_flipped > 0


def test_flip_reproducible_with_torch_seed(synth_root):
    ds = FaceDataset(synth_root, split="train")

    def run() -> list[torch.Tensor]:
        torch.manual_seed(123)
        return [ds[i]["label"] for i in range(len(ds))]

    assert all(torch.equal(x, y) for x, y in zip(run(), run()))


def test_one_hot_helper():
    lab = torch.tensor([[0, 1], [2, 1]])
    oh = one_hot(lab, 3)
    assert oh.shape == (3, 2, 2) and oh.dtype == torch.float32
    assert torch.equal(oh.argmax(0), lab)
    assert one_hot(np.zeros((2, 4, 4), dtype=np.uint8), 5).shape == (2, 5, 4, 4)
    with pytest.raises(ValueError, match="out of range"):
        one_hot(torch.tensor([[3]]), 3)


def test_load_mask_file_ids_and_colours(tmp_path):
    ids = np.array([[0, 4, 5], [13, 18, 1]], dtype=np.uint8)
    Image.fromarray(ids).save(tmp_path / "ids.png")
    Image.fromarray(CELEBAMASK_HQ.colorize(ids)).save(tmp_path / "colour.png")
    assert np.array_equal(load_mask_file(tmp_path / "ids.png"), ids)
    assert np.array_equal(load_mask_file(tmp_path / "colour.png", CELEBAMASK_HQ), ids)
    # An id map saved as RGB grey (r = g = b = id) still reads as ids.
    Image.fromarray(np.repeat(ids[..., None], 3, 2)).save(tmp_path / "grey.png")
    assert np.array_equal(load_mask_file(tmp_path / "grey.png"), ids)
    bad = CELEBAMASK_HQ.colorize(ids)
    bad[0, 0] = (1, 2, 3)
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"bad.png.*\(1, 2, 3\)"):
        load_mask_file(tmp_path / "bad.png")


def test_label_modes(tmp_path):
    ids = np.array([[0, 3], [7, 18]], dtype=np.uint8)
    p = Image.fromarray(ids, mode="L").convert("P")
    p.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    p.save(tmp_path / "p.png")
    assert np.array_equal(load_label(tmp_path / "p.png", 19), ids)
    Image.fromarray(ids.astype(np.uint16)).save(tmp_path / "i16.png")
    assert np.array_equal(load_label(tmp_path / "i16.png", 19), ids)
    Image.fromarray(np.array([[300]], dtype=np.uint16)).save(tmp_path / "big16.png")
    with pytest.raises(ValueError, match="big16.png.*300"):
        load_label(tmp_path / "big16.png", 19)


def test_label_id_out_of_range(tmp_path):
    Image.fromarray(np.array([[0, 25]], dtype=np.uint8)).save(tmp_path / "l.png")
    with pytest.raises(ValueError, match=r"l.png: label id 25 is out of range for 19 classes"):
        load_label(tmp_path / "l.png", 19)


def test_image_conversions(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    with pytest.warns(DataWarning, match="rgba.png.*transparency"):
        out = load_image(tmp_path / "rgba.png")
    assert out.shape == (4, 4, 3) and out[0, 0, 0] == 0 and out[1, 1, 0] == 200

    Image.fromarray(np.full((3, 5), 77, np.uint8), "L").save(tmp_path / "gray.png")
    g = load_image(tmp_path / "gray.png")
    assert g.shape == (3, 5, 3) and (g == 77).all()

    Image.fromarray(np.full((2, 2), 65535, np.uint16)).save(tmp_path / "deep.png")
    with pytest.warns(DataWarning, match="deep.png"):
        d = load_image(tmp_path / "deep.png")
    assert d.dtype == np.uint8 and (d == 255).all()

    pal = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    pal.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    assert load_image(tmp_path / "pal.png").tolist() == [[[10, 20, 30], [40, 50, 60]]]


def test_corrupt_truncated_missing_images(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="junk.png: not an image file"):
        load_image(tmp_path / "junk.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="trunc.jpg"):
        load_image(tmp_path / "trunc.jpg")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")


def test_decompression_bomb(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match="bomb.png.*decompression bomb"):
        load_image(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # warning range (between 1x and 2x) is refused too
    with pytest.raises(ValueError, match="bomb.png.*decompression bomb"):
        load_image(tmp_path / "bomb.png")


def test_dataset_size_mismatch_names_both(tmp_path):
    root = make_dataset(tmp_path / "d", {"a": np.zeros((8, 8, 3), np.uint8)}, {"a": np.zeros((4, 6), np.uint8)})
    ds = FaceDataset(root, split="train")
    with pytest.raises(ValueError, match=r"labels/a.png: label map is 6x4.*images/a.png is 8x8"):
        ds[0]


def test_dataset_missing_label_and_bad_ids(tmp_path):
    root = make_dataset(tmp_path / "d", {"a": np.zeros((4, 4, 3), np.uint8), "b": np.zeros((4, 4, 3), np.uint8)},
                        {"b": np.full((4, 4), 40, np.uint8)})
    ds = FaceDataset(root, split="train")
    with pytest.raises(FileNotFoundError, match="labels/a.png"):
        ds[0]
    with pytest.raises(ValueError, match="label id 40"):
        ds[1]


def test_dataset_uses_labels_json(tmp_path):
    ls = LabelSet(name="two", names=("bg", "fg"), colors=((0, 0, 0), (255, 255, 255)))
    root = make_dataset(tmp_path / "d", {"a": np.zeros((4, 4, 3), np.uint8)}, {"a": np.ones((4, 4), np.uint8)})
    ls.save(root / "labels.json")
    ds = FaceDataset(root, split="train", one_hot=True, flip=False)
    assert ds.num_classes == 2 and ds[0]["one_hot"].shape == (2, 4, 4)


def test_empty_or_wrong_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FaceDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a dataset folder"):
        DatasetLayout(tmp_path / "empty")
    root = make_dataset(tmp_path / "d", {"a": np.zeros((4, 4, 3), np.uint8)}, {"a": np.zeros((4, 4), np.uint8)})
    with pytest.raises(FileNotFoundError, match="split 'test' not found; available splits: train"):
        read_split(root, "test")
    (root / "splits" / "val.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        FaceDataset(root, split="val")


def test_dataloader_batches(synth_root):
    loader = torch.utils.data.DataLoader(FaceDataset(synth_root, split="train"), batch_size=3, shuffle=False)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["label"].shape == (3, 32, 32)
    assert batch["attributes"].shape == (3, 40) and len(batch["id"]) == 3
