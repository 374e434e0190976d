"""`scadm eval ...` protocols end to end on a tiny model and dataset."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model):
    from scadm.data import write_synthetic_dataset
    from scadm.models.face_parser import CompactParser, save_compact_parser

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evalp")
    data = write_synthetic_dataset(root / "ds", n=16, size=32, seed=0, test_fraction=0.25, progress=False)
    torch.manual_seed(0)
    parser = save_compact_parser(CompactParser(19, width=8), root / "parser", {"note": "random weights"})
    return data, root / "parser", root


def test_reconstruction_and_partial_swap_protocols(run_cli, tiny_model, setup, monkeypatch, tmp_path):
    data, parser, root = setup
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights-here"))
    common = ["--data", data, "--model", tiny_model, "--parser", parser, "--steps", "2", "--out", root / "work"]
    r = run_cli("eval", "reconstruction", *common, "--json", root / "rec.json")
    assert r.code == 0, r.err
    rec = json.loads((root / "rec.json").read_text())
    assert 0 <= rec["ssim"] <= 1 and 0 <= rec["miou"] <= 1 and "parser_fd" in rec and "fid" not in rec
    assert "NOT FID" in rec["parser_fd_protocol"]
    assert "FID/KID skipped" in r.out and "weights-inception-2015-12-05-6726825d.pth" in r.out
    r = run_cli("eval", "partial-swap", *common, "--json", root / "ps.json")
    assert r.code == 0, r.err
    ps = json.loads((root / "ps.json").read_text())
    assert ps["change_inside"] >= 0 and ps["change_outside"] >= 0 and ps["change_per_part"]
    assert (root / "work" / "partial-swap.md").is_file()
    # resumable: a rerun reuses every generated image
    again = run_cli("eval", "reconstruction", *common)
    assert again.code == 0 and "4 already done" in again.out


def test_noise_and_diversity_protocols(run_cli, tiny_model, setup):
    data, parser, root = setup
    common = ["--data", data, "--model", tiny_model, "--parser", parser, "--out", root / "work2", "--n", "2"]
    r = run_cli("eval", "noise", *common, "--steps-list", "2,3")
    assert r.code == 0, r.err
    res = json.loads((root / "work2" / "noise.json").read_text())
    assert [row["steps"] for row in res["rows"]] == [2, 3]
    assert (root / "work2" / "noise_steps.png").is_file()
    r = run_cli("eval", "diversity", *common, "--samples", "3", "--steps", "2")
    assert r.code == 0, r.err
    div = json.loads((root / "work2" / "diversity.json").read_text())
    assert div["metric"] == "pixel_l1" and div["diversity"] > 0


def test_timing_protocol(run_cli, tiny_model, tmp_path):
    r = run_cli("eval", "timing", "--model", tiny_model, "--steps", "2", "--repeats", "1", "--json", tmp_path / "t.json")
    assert r.code == 0, r.err
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert {row["mode"] for row in rows} == {"noise-based", "reconstruction (guided)"}
    assert all(row["s_per_step"] > 0 for row in rows)


def _pngs(folder):
    import numpy as np
    from PIL import Image

    return {p.stem: np.asarray(Image.open(p).convert("RGB")).astype(int) for p in sorted(folder.glob("*.png"))}


def test_protocols_sample_from_noise_unless_asked(run_cli, tiny_model, setup, tmp_path):
    """The papers' protocols run the denoiser (inversion none) by default; the faithful variant is one
    option away, named in the report, and a blended reconstruction is exactly the first stage's."""
    import numpy as np

    from scadm.data.layout import DatasetLayout
    from scadm.pipeline import SCADMPipeline, to_pil

    data, parser, _ = setup
    work = tmp_path / "work"
    common = ["--data", data, "--model", tiny_model, "--parser", parser, "--steps", "2", "--n", "3", "--out", work]
    r = run_cli("eval", "reconstruction", *common)
    assert r.code == 0, r.err
    default = json.loads((work / "reconstruction.json").read_text())
    assert default["inversion"] == "none" and default["blend"] is False and default["measures"] == "the denoiser"
    assert "sampled from noise" in default["sampling_protocol"]
    assert json.loads((work / "reconstruction" / "run.json").read_text())["inversion"] == "none"

    # the first stage's encode-decode of each face, as the protocol loads it
    pipe = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    layout = DatasetLayout(data)
    first = {}
    for i in layout.ids("test")[:3]:
        x = pipe.inputs.load_image(layout.image_path(i))
        first[i] = np.asarray(to_pil(pipe.first_stage.decode(pipe.first_stage.encode(x)))[0]).astype(int)
    denoised = _pngs(work / "reconstruction")
    assert denoised.keys() == first.keys()
    assert all(np.abs(denoised[i] - first[i]).max() > 10 for i in first)

    r = run_cli("eval", "reconstruction", *common, "--inversion", "exact", "--blend")
    assert r.code == 0, r.err
    faithful = json.loads((work / "reconstruction.json").read_text())
    assert faithful["inversion"] == "exact" and faithful["blend"] is True
    assert faithful["measures"] == "the first stage (autoencoder), not the denoiser"
    assert "measures the first stage" in r.out
    kept = _pngs(work / "reconstruction-exact-blend")
    assert all(np.array_equal(kept[i], first[i]) for i in first)
    assert _pngs(work / "reconstruction").keys() == first.keys()  # the default's images are untouched

    # scadm sample --inversion none gives the default protocol's images, seed for seed
    r = run_cli("sample", "--data", data, "--model", tiny_model, "--mode", "reconstruction", "--steps", "2",
                "--limit", "3", "--inversion", "none", "--out", tmp_path / "sampled")
    assert r.code == 0, r.err
    sampled = _pngs(tmp_path / "sampled")
    assert all(np.array_equal(sampled[i], denoised[i]) for i in first)
    record = json.loads((tmp_path / "sampled" / "run.json").read_text())
    assert record["inversion"] == "none" and record["blend"] is False and record["mode"] == "reconstruction"

    # a folder made with other settings is refused, not mixed into
    r = run_cli("sample", "--data", data, "--model", tiny_model, "--mode", "reconstruction", "--steps", "2",
                "--limit", "3", "--out", tmp_path / "sampled")
    assert r.code == 1 and "other settings" in r.err and "inversion 'none' (now 'exact')" in r.err
    assert r.err.count("\n") == 1


def test_noise_protocol_refuses_inversion(run_cli, tiny_model, setup, tmp_path):
    data, parser, _ = setup
    r = run_cli("eval", "noise", "--data", data, "--model", tiny_model, "--parser", parser, "--n", "2",
                "--steps-list", "2", "--inversion", "exact", "--out", tmp_path / "w")
    assert r.code == 1 and "inversion 'exact' inverts a target face" in r.err
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").rglob("*.png"))
