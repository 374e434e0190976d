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
