"""Metrics: FID / KID, SSIM / PSNR, mIoU, LPIPS diversity, attribute accuracy, timing, and the training CLIs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scadm.eval.metrics import (
    ConfusionMatrix,
    attribute_accuracy,
    frechet_distance,
    kernel_distance,
    make_fid_metric,
    make_kid_metric,
    mean_pairwise_distance,
    psnr,
    segmentation_scores,
    ssim,
    time_per_call,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_frechet_and_kernel_distance_generic():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(400, 8))
    assert abs(frechet_distance(a, a)) < 1e-6
    base = frechet_distance(a, b)
    assert base < 0.5
    shifts = [frechet_distance(a, b + s) for s in (0.5, 1.0, 2.0)]
    assert base < shifts[0] < shifts[1] < shifts[2]
    # a pure mean shift of s in every dimension adds 8 s^2
    assert frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-6)
    kid_same, _ = kernel_distance(a, a, subsets=5, subset_size=100)
    kid_b, _ = kernel_distance(a, b, subsets=5, subset_size=100)
    kid_far, std = kernel_distance(a, b + 1.0, subsets=5, subset_size=100)
    # independent random subsets: unbiased, about 0 (not exactly) for the same distribution
    assert abs(kid_same) < 0.1 and abs(kid_b) < 0.1 and kid_far > 20 * max(abs(kid_same), abs(kid_b)) and std >= 0
    with pytest.raises(ValueError):
        frechet_distance(a, a[:, :4])


class _TinyExtractor(torch.nn.Module):
    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Conv2d(3, 6, 3)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).mean(dim=(2, 3)) * 10


def test_torchmetrics_fid_kid_with_own_extractor():
    ext = _TinyExtractor()
    g = torch.Generator().manual_seed(0)
    real = torch.rand(64, 3, 8, 8, generator=g) * 2 - 1
    fid = make_fid_metric(ext)
    fid.update(real, real=True)
    fid.update(real, real=False)
    assert abs(float(fid.compute())) < 1e-3
    fid.reset()
    fid.update(real, real=True)
    fid.update((real + 0.5).clamp(-1, 1), real=False)
    shifted = float(fid.compute())
    assert shifted > 0.1
    # agrees with the generic implementation on the same features
    fa, fb = ext.features(real).detach(), ext.features((real + 0.5).clamp(-1, 1)).detach()
    assert shifted == pytest.approx(frechet_distance(fa, fb), rel=1e-3, abs=1e-3)
    kid = make_kid_metric(ext, subsets=3, subset_size=32)
    kid.update(real, real=True)
    kid.update((real + 0.5).clamp(-1, 1), real=False)
    mean, _ = kid.compute()
    assert float(mean) > 0


def test_ssim_psnr():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    y = (x + 0.001 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    p = psnr(y, x)
    assert np.isfinite(p) and p > 50
    z = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert psnr(z, x) < p and ssim(z, x) < 1.0


def test_miou_perfect_and_known_confusion():
    t = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 2]])
    s = segmentation_scores(t, t, num_classes=5)
    assert s["miou"] == 1.0 and s["pixel_accuracy"] == 1.0
    assert s["per_class_iou"][3] is None and s["per_class_iou"][4] is None  # absent classes excluded
    p = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    # class 0: tp 3, fp 0, fn 1 -> 3/4; class 1: tp 3, fp 2 (pixels of 0 and 2), fn 0 -> 3/5; class 2: tp 0 -> 0
    s = segmentation_scores(p, t, num_classes=5)
    assert s["per_class_iou"][:3] == pytest.approx([0.75, 0.6, 0.0])
    assert s["miou"] == pytest.approx((0.75 + 0.6 + 0.0) / 3)
    assert s["pixel_accuracy"] == pytest.approx(6 / 8)
    # accumulation over batches equals one pass over everything
    cm = ConfusionMatrix(5)
    cm.update(p[:1], t[:1]).update(p[1:], t[1:])
    assert cm.miou() == pytest.approx(s["miou"])
    assert cm.miou(ignore_absent=False) == pytest.approx((0.75 + 0.6) / 5)
    # ignored pixels (255) do not count
    t2 = t.clone()
    t2[0, 1] = 255
    assert segmentation_scores(p, t2, 5)["pixel_accuracy"] == pytest.approx(6 / 7)


def test_attribute_accuracy():
    logits = torch.tensor([[2.0, -1.0], [-3.0, 0.5]])
    targets = torch.tensor([[1, 0], [1, 1]])
    assert attribute_accuracy(logits, targets) == pytest.approx(0.75)
    assert attribute_accuracy(torch.sigmoid(logits), targets) == pytest.approx(0.75)
    assert attribute_accuracy(logits, targets * 2 - 1) == pytest.approx(0.75)


def test_mean_pairwise_distance_with_lpips():
    from scadm.eval.lpips import LPIPS

    torch.manual_seed(0)
    lp = LPIPS(pretrained=False)
    for i in range(5):  # random heads are signed; make them non-negative like the released ones
        w = getattr(lp, f"lin{i}").model[1].weight
        w.data = w.data.abs()
    same = torch.zeros(4, 3, 16, 16).repeat(1, 1, 1, 1) + 0.2
    assert mean_pairwise_distance(same, lp) == pytest.approx(0.0, abs=1e-7)
    diverse = torch.rand(4, 3, 16, 16) * 2 - 1
    assert mean_pairwise_distance(diverse, lp) > 0
    # mean over all unordered pairs
    l1 = lambda a, b: (a - b).abs().mean(dim=(1, 2, 3))  # noqa: E731
    x = torch.arange(3.0).view(3, 1, 1, 1)
    assert mean_pairwise_distance(x, l1) == pytest.approx((1 + 2 + 1) / 3)


def test_time_per_call():
    calls = []
    t = time_per_call(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7 and t >= 0


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from scadm.data import write_synthetic_dataset

    out = tmp_path_factory.mktemp("tiny") / "data"
    write_synthetic_dataset(out, n=40, size=32, seed=0, test_fraction=0.25, progress=False)
    return out


def test_train_parser_cli(tiny_dataset, tmp_path, run_cli):
    from scadm.models.face_parser import CompactParser, load_parser

    out = tmp_path / "parser"
    r = run_cli("train-parser", "--data", tiny_dataset, "--out", out, "--steps", 3, "--batch-size", 8, "--width", 8, "--threads", 1)
    assert r.code == 0, r.err
    assert "mIoU" in r.out
    meta = json.loads((out / "parser.json").read_text())
    assert meta["kind"] == "compact-parser" and meta["train"]["steps"] == 3
    assert 0 <= meta["metrics"]["miou"] <= 1 and 0 <= meta["metrics"]["pixel_accuracy"] <= 1
    assert meta["metrics"]["num_images"] == 10
    assert (out / "parser.safetensors").is_file()
    parser = load_parser(out)
    assert isinstance(parser, CompactParser) and parser.parse(torch.zeros(1, 3, 32, 32)).shape == (1, 32, 32)
    # refuses to overwrite a trained run
    r = run_cli("train-parser", "--data", tiny_dataset, "--out", out, "--steps", 1)
    assert r.code == 1 and "already holds" in r.err


def test_train_classifier_cli(tiny_dataset, tmp_path, run_cli):
    from scadm.eval.classifier import load_classifier

    out = tmp_path / "clf"
    r = run_cli("train-classifier", "--data", tiny_dataset, "--out", out, "--steps", 2, "--batch-size", 4, "--threads", 1)
    assert r.code == 0, r.err
    meta = json.loads((out / "classifier.json").read_text())
    assert meta["kind"] == "attribute-classifier" and len(meta["attribute_names"]) == 40
    assert 0 <= meta["metrics"]["mean_accuracy"] <= 1 and len(meta["metrics"]["per_attribute_accuracy"]) == 40
    clf = load_classifier(out)
    assert clf.predict(torch.zeros(2, 3, 32, 32)).shape == (2, 40)
    r = run_cli("train-classifier", "--data", tiny_dataset / "nope", "--steps", 1, "--out", tmp_path / "c2")
    assert r.code == 1 and "no such dataset folder" in r.err
