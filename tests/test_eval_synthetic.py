"""The synthetic benchmark scores a perfect oracle near 1 and a style-blind model near chance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from scadm.eval.controllability import SyntheticBenchmark, region_means
from scadm.labels import CELEBAMASK_HQ


class _Result:
    def __init__(self, arrays):
        self.images = [Image.fromarray(a.astype(np.uint8)) for a in arrays]


class PaintingPipe:
    """A pipeline double that paints each region with a colour: the styles it was asked for
    (oracle=True, read from the inputs' region means) or a fixed colour per class (style-blind)."""

    image_size = (64, 64)

    def __init__(self, oracle: bool) -> None:
        self.oracle = oracle
        self.blind = np.random.default_rng(0).integers(0, 256, (19, 3))

    def _style(self, face):
        image, label = face
        return region_means(np.asarray(image), np.asarray(label), erode=False)

    def _paint(self, label, colours):
        out = np.zeros((*label.shape, 3))
        for c in np.unique(label):
            out[label == c] = colours.get(int(c), (127, 127, 127)) if self.oracle else self.blind[c]
        return out

    def _parts(self, parts):
        return None if parts is None else [CELEBAMASK_HQ.index(p) for p in parts]

    def reconstruct(self, images, labels, **_):
        return _Result([self._paint(lab, self._style((im, lab))) for im, lab in zip(images, labels)])

    def swap(self, targets, refs, parts, **_):
        single = isinstance(targets, tuple)
        targets, refs = ([targets], [refs]) if single else (targets, refs)
        per_image = parts is not None and isinstance(parts[0], (list, tuple))
        out = []
        for k, (t, r) in enumerate(zip(targets, refs)):
            wanted = self._parts(parts[k] if per_image else parts)
            cols, rc = self._style(t), self._style(r)
            for c in rc:
                if wanted is None or c in wanted:
                    cols[c] = rc[c]
            out.append(self._paint(np.asarray(t[1]), cols))
        return _Result(out)

    def mix(self, labels, refs, parts, **_):
        out = []
        for label, ref in zip(labels, refs):
            rc = self._style(ref)
            out.append(self._paint(np.asarray(label), {c: rc[c] for c in self._parts(parts) if c in rc}))
        return _Result(out)

    def interpolate(self, target, ref, parts, alphas, **_):
        tc, rc = self._style(target), self._style(ref)
        parts = self._parts(parts)
        frames = []
        for a in alphas:
            cols = {c: ((1 - a) * v + a * rc[c]) if (c in rc and (parts is None or c in parts)) else v
                    for c, v in tc.items()}
            frames.append(self._paint(np.asarray(target[1]), cols))
        return _Result(frames)


@pytest.fixture(scope="module")
def reports():
    out = {}
    for oracle in (True, False):
        out[oracle] = SyntheticBenchmark(PaintingPipe(oracle), n=40, seed=0).run(parser=None)
    return out


def test_perfect_oracle_scores_near_one(reports):
    r = reports[True]
    for key in ("reconstruction_success", "total_swap_success", "partial_swap_success", "partial_swap_preserved",
                "partial_swap_all_success", "partial_swap_all_preserved", "mixed_success", "interpolation_monotonic"):
        assert r[key] >= 0.97, (key, r[key])
    # the partial swap is judged on the six parts of SWAP_PARTS; the "all" variant on every class
    assert set(r["partial_swap_per_part"]) == {"skin", "hair", "l_eye", "r_eye", "u_lip", "cloth"}
    assert set(r["partial_swap_all_per_part"]) >= {"l_eye", "r_eye", "hair", "skin", "nose", "l_brow"}


def test_style_blind_model_scores_near_chance(reports):
    r = reports[False]
    for key in ("reconstruction_success", "total_swap_success", "partial_swap_success", "mixed_success"):
        assert 0.3 <= r[key] <= 0.7, (key, r[key])


def test_region_means_match_the_style_colours():
    from scadm.data.synthetic import render_face
    from scadm.eval.controllability import style_colors

    f = render_face(1_000_003, size=64)
    means = region_means(f.image, f.label, erode=False)
    for c, col in style_colors(f.styles).items():
        assert np.abs(means[c] - col).max() < 3.0


def test_reports_name_paths_below_the_working_directory_relatively(tmp_path, monkeypatch):
    from scadm.cli.eval_cmds import _shown

    (tmp_path / "run" / "parser").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "run")
    assert _shown(tmp_path / "run" / "parser") == "parser"
    assert _shown(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")


class ColourParser:
    """A parser double: each pixel gets the class whose fixed colour is nearest."""

    def __init__(self, colours: np.ndarray) -> None:
        self.colours = torch.tensor(colours, dtype=torch.float32)

    def parse(self, x: torch.Tensor) -> torch.Tensor:
        rgb = ((x + 1) * 127.5).permute(0, 2, 3, 1)[..., None, :]  # (B, H, W, 1, 3)
        return (rgb - self.colours).pow(2).sum(-1).argmin(-1)


class MouthlessPipe(PaintingPipe):
    """Noise-based samples that follow the mask everywhere except the mouth, painted as skin."""

    def generate(self, labels, n, seed=0, **_):
        labels = np.where(np.asarray(labels) == CELEBAMASK_HQ.index("mouth"), CELEBAMASK_HQ.index("skin"), labels)
        return _Result([self.blind[lab] for lab in labels])


def test_noise_protocol_reports_the_parser_iou_per_part():
    from scadm.eval.reporting import synthetic_markdown

    pipe = MouthlessPipe(oracle=False)
    r = SyntheticBenchmark(pipe, n=8, seed=0).run(parser=ColourParser(pipe.blind), protocols=("noise",))
    iou = r["noise_iou_per_part"]
    assert iou["mouth"]["noise"] == 0.0  # never drawn
    assert iou["l_eye"]["noise"] == 1.0 and iou["hair"]["noise"] == 1.0  # followed exactly
    assert 0.0 < iou["skin"]["noise"] < 1.0  # the mouth's pixels were added to it
    assert 0.0 < r["noise_miou"] < 1.0
    assert "| mouth | 0.000 |" in synthetic_markdown(r, "scadm eval synthetic")


def test_standard_errors_count_faces_not_regions(reports):
    from scadm.eval.controllability import Tally
    from scadm.eval.reporting import synthetic_markdown

    clustered, independent = Tally(), Tally()
    for face, ok in ((0, True), (1, False)):
        for _ in range(10):
            clustered.add(3, ok, face)
            independent.add(3, ok)
    assert clustered.rate == independent.rate == 0.5
    assert clustered.se == pytest.approx(0.5)  # two faces: all or nothing each
    assert independent.se == pytest.approx(np.sqrt(20 / 19 * 20 * 0.25) / 20)  # ~ binomial sqrt(p(1-p)/n)
    blind = reports[False]["standard_errors"]
    assert 0.01 < blind["reconstruction_success"] < 0.15
    assert reports[True]["standard_errors"]["reconstruction_success"] < 0.03
    assert "| standard error |" in synthetic_markdown(reports[False], "scadm eval synthetic")


def _iou_counts(matrices: np.ndarray) -> np.ndarray:
    """(n, K, K) confusion matrices -> (n, 3, K) true positives, predicted and target counts."""
    return np.stack([np.stack([np.diag(m), m.sum(0), m.sum(1)]) for m in matrices])


def test_noise_ratio_standard_error_is_a_bootstrap_over_faces():
    from scadm.eval.controllability import bootstrap_se

    real = _iou_counts(np.stack([np.diag([50, 50, 50])] * 20))  # the parser is perfect on real faces
    same = _iou_counts(np.stack([np.array([[40, 10, 0], [0, 50, 0], [0, 0, 50]])] * 20))
    assert bootstrap_se([np.stack([same, real])]) == pytest.approx(0.0, abs=1e-12)  # every face alike
    varied = same.copy()
    varied[::2] = real[::2]  # half the faces perfect, half with class 0 half-missed
    se = bootstrap_se([np.stack([varied, real])])
    assert 0.005 < se < 0.05
    # paired: a run against itself differs by exactly 0 in every resample
    assert bootstrap_se([np.stack([varied, real])] * 2) == pytest.approx(0.0, abs=1e-12)


def test_paired_standard_errors_of_two_runs_on_the_same_faces():
    from scadm.eval.controllability import paired_standard_errors

    rng = np.random.default_rng(0)
    hard = rng.random(200) < 0.3  # faces hard for both samplers
    a = [[f, int(not hard[f]) * 4, 4] for f in range(200)]
    b = [[f, int(not hard[f]) * (4 - int(f % 50 == 0)), 4] for f in range(200)]  # b misses one more region on a few faces
    ra, rb = {"per_face": {"recon": a}}, {"per_face": {"recon": b}}
    assert paired_standard_errors(ra, ra)["recon"] == 0.0
    paired = paired_standard_errors(ra, rb)["recon"]
    assert paired > 0
    # by hand: every face's linearised difference, the faces as clusters
    ta = tb = 800.0
    ha, hb = np.array([r[1] for r in a], float), np.array([r[1] for r in b], float)
    z = (ha - ha.sum() / ta * 4) / ta - (hb - hb.sum() / tb * 4) / tb
    assert paired == pytest.approx(np.sqrt(200 / 199 * np.sum(z**2)))
    unpaired = np.hypot(*(np.sqrt(200 / 199 * np.sum((h - h.sum() / 800 * 4) ** 2)) / 800 for h in (ha, hb)))
    assert paired < unpaired / 5  # the shared hard faces cancel


class _Stopped(Exception):
    pass


class StoppingPipe(PaintingPipe):
    """Stops (as a killed run would) in the mixed protocol while `stop` is set."""

    stop = True

    def mix(self, *args, **kw):
        if self.stop:
            raise _Stopped
        return super().mix(*args, **kw)


def test_a_stopped_run_resumes_from_its_checkpoint_to_the_same_report(tmp_path):
    unbroken = SyntheticBenchmark(PaintingPipe(False), n=20, seed=0).run(parser=None)
    pipe, checkpoint = StoppingPipe(False), tmp_path / "run.partial.json"
    with pytest.raises(_Stopped):
        SyntheticBenchmark(pipe, n=20, seed=0).run(parser=None, checkpoint=checkpoint, identity={"model": "m"})
    saved = json.loads(checkpoint.read_text())
    assert saved["done"] == ["reconstruction", "total_swap", "partial_swap", "partial_swap_all"]
    pipe.stop = False
    resumed = SyntheticBenchmark(pipe, n=20, seed=0).run(parser=None, checkpoint=checkpoint, identity={"model": "m"})
    assert set(resumed["seconds"]) == set(unbroken["seconds"])  # the first four protocols' times are kept
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in unbroken.items() if k != "seconds"}
    # the style-blind pipe's rates depend on the random 'other' faces: the random state was restored
    assert 0.2 < unbroken["mixed_success"] < 0.8

    with pytest.raises(ValueError, match="run.partial.json: a stopped benchmark run with other settings"):
        SyntheticBenchmark(pipe, n=20, seed=0).run(parser=None, checkpoint=checkpoint, identity={"model": "other"})
    with pytest.raises(ValueError, match="unknown protocol"):
        SyntheticBenchmark(pipe, n=20, seed=0).run(protocols=["reconstruction", "fid"])


def test_the_drift_is_measured_outside_the_region_blending_frees(tiny_model):
    """unedited_drift counts the pixels latent blending keeps: outside the part grown by the blend margin."""
    import numpy as np
    import torch

    from scadm.data.synthetic import render_face
    from scadm.pipeline import SCADMPipeline
    from scadm.pipeline.plan import blend_region

    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    label = render_face(3, size=pipe.image_size).label
    hair = pipe.label_set.index("hair")
    kept = SyntheticBenchmark(pipe, n=2, seed=0)._kept(label, hair)
    freed = blend_region(torch.from_numpy(label == hair)[None], 1, pipe.cfg.latent_size)
    freed = torch.nn.functional.interpolate(freed, size=label.shape, mode="nearest")[0, 0].numpy() > 0
    assert np.array_equal(kept, ~freed) and (freed & (label != hair)).any()  # the margin is not counted
