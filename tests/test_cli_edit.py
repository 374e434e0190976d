"""`scadm edit ...`, `scadm sample`, `scadm demo` end to end on tiny fixtures, and their bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

FAST = ["--steps", "2"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_edit_commands_end_to_end_with_colour_masks(run_cli, tiny_model, tiny_faces, tmp_path):
    (i0, m0, c0), (i1, m1, c1) = tiny_faces[:2]
    m = ["--model", tiny_model, *FAST]
    cases = {
        "recon.png": ["edit", "reconstruct", "--image", i0, "--mask", c0],
        "swap.png": ["edit", "swap", "--target", i0, "--target-mask", m0, "--reference", i1, "--reference-mask", c1,
                     "--parts", "l_eye,hair"],
        "interp.png": ["edit", "interpolate", "--target", i0, "--target-mask", m0, "--reference", i1,
                       "--reference-mask", m1, "--alphas", "0,0.5,1"],
        "gen.png": ["edit", "generate", "--mask", c0, "--n", "2"],
        "mix.png": ["edit", "mix", "--mask", m0, "--reference", i1, "--reference-mask", m1, "--parts", "hair"],
        "editmask.png": ["edit", "edit-mask", "--image", i0, "--mask", m0, "--new-mask", c1],
    }
    for name, args in cases.items():
        r = run_cli(*args, *m, "--out", tmp_path / name)
        assert r.code == 0, (name, r.err)
        assert (tmp_path / name).is_file() and (tmp_path / name.replace(".png", "_grid.png")).is_file()
    assert (tmp_path / "interp_2.png").is_file() and (tmp_path / "gen_1.png").is_file()
    assert Image.open(tmp_path / "recon.png").size == (32, 32)


def test_labels_command_lists_the_palette(run_cli):
    r = run_cli("labels")
    assert r.code == 0 and "l_eye" in r.out and "cloth" in r.out


def test_demo_writes_report_and_metrics(run_cli, tiny_model, tmp_path):
    r = run_cli("demo", "--model", tiny_model, "--out", tmp_path / "demo", *FAST, "--metric-faces", "3")
    assert r.code == 0, r.err
    assert (tmp_path / "demo" / "index.html").is_file()
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    for key in ("reconstruction_success", "total_swap_success", "partial_swap_success", "partial_swap_preserved"):
        assert 0.0 <= metrics[key] <= 1.0
    html = (tmp_path / "demo" / "index.html").read_text()
    for fig in ("reconstruction.png", "total_swap.png", "partial_swap.png", "interpolation.png", "noise.png", "mixed.png",
                "keep_face.png"):
        assert fig in html and (tmp_path / "demo" / fig).is_file()
    # the metrics table speaks to people: names, one sentence each, standard errors; then what to try
    assert "Partial swap, swapped part" in html and "partial_swap_success" not in html and "`" not in html
    assert "standard error" in html and "scadm app" in html and "79999_iter.pth" in html and "scadm convert" in html


def test_demo_figures_swap_parts_that_differ_visibly():
    """Each part the demo swaps comes from the test face whose part colour is farthest from the target's:
    at least VISIBLE_DISTANCE (60 in RGB 0..255) in every column of the partial-swap figures and for the
    interpolation's hair, at the bundled model's 64 px and at the tiny model's 32 px."""
    from scadm.data.synthetic import render_face, synthetic_split_ids
    from scadm.demo import SWAP_FIGURE_PARTS, VISIBLE_DISTANCE, part_distance, pick_reference
    from scadm.labels import CELEBAMASK_HQ

    for size in (64, 32):
        faces = [render_face(i, size=size) for i in synthetic_split_ids("test", 8)]
        for target, parts in [(0, p) for p in SWAP_FIGURE_PARTS] + [(2, ["hair"])]:
            classes = CELEBAMASK_HQ.indices(parts)
            ref = pick_reference(faces, target, classes)
            assert ref != target
            assert part_distance(faces[target], faces[ref], classes) >= VISIBLE_DISTANCE, (size, parts)


def test_sample_is_resumable(run_cli, tiny_model, tmp_path):
    from scadm.data import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "ds", n=12, size=32, seed=0, test_fraction=0.25, progress=False)
    out = tmp_path / "samples"
    r = run_cli("sample", "--data", data, "--mode", "noise", "--out", out, "--model", tiny_model, *FAST, "--limit", "2")
    assert r.code == 0, r.err
    assert len(list(out.glob("*.png"))) == 2
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    r = run_cli("sample", "--data", data, "--mode", "noise", "--out", out, "--model", tiny_model, *FAST)
    assert r.code == 0 and "2 already done" in r.out
    assert len(list(out.glob("*.png"))) == 3
    assert all(first[n] == (out / n).read_bytes() for n in first)


def one_line_error(r) -> bool:
    return r.code != 0 and "Traceback" not in r.err and r.err.strip().count("\n") <= 2


def test_bad_inputs_give_one_line_errors(run_cli, tiny_model, tiny_faces, tmp_path):
    (i0, m0, c0), (i1, m1, _) = tiny_faces[:2]
    m = ["--model", tiny_model, *FAST]
    r = run_cli("edit", "reconstruct", "--image", tmp_path / "nope.png", "--mask", m0, *m, "--out", tmp_path / "o.png")
    assert one_line_error(r) and "nope.png" in r.err
    r = run_cli("edit", "swap", "--target", i0, "--target-mask", m0, "--reference", i1, "--reference-mask", m1,
                "--parts", "l_eye,beard", *m, "--out", tmp_path / "o.png")
    assert one_line_error(r) and "beard" in r.err and "l_eye" in r.err
    r = run_cli("edit", "swap", "--target", i0, "--target-mask", m0, "--reference", i1, *m, "--out", tmp_path / "o.png")
    assert one_line_error(r) and "--reference-mask" in r.err
    weird = tmp_path / "weird_colours.png"
    Image.fromarray(np.full((32, 32, 3), (1, 2, 3), np.uint8)).save(weird)
    r = run_cli("edit", "generate", "--mask", weird, *m, "--out", tmp_path / "o.png")
    assert one_line_error(r) and "(1, 2, 3)" in r.err
    wide = tmp_path / "wide.png"
    Image.new("RGB", (64, 32)).save(wide)
    r = run_cli("edit", "reconstruct", "--image", wide, "--mask", m0, *m, "--out", tmp_path / "o.png")
    assert one_line_error(r) and "aspect" in r.err
    before = i0.read_bytes()
    r = run_cli("edit", "reconstruct", "--image", i0, "--mask", m0, *m, "--out", i0)
    assert one_line_error(r) and "also an input" in r.err and i0.read_bytes() == before
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "model.safetensors").write_bytes(b"junk")
    (broken / "autoencoder").mkdir()
    r = run_cli("edit", "generate", "--mask", m0, "--model", broken, "--out", tmp_path / "o.png")
    assert one_line_error(r) and "config.json" in r.err
    r = run_cli("edit", "generate", "--mask", m0, "--model", tmp_path, "--out", tmp_path / "o.png")
    assert one_line_error(r) and "not a scadm model folder" in r.err
    r = run_cli("--debug", "edit", "generate", "--mask", m0, "--model", tmp_path, "--out", tmp_path / "o.png")
    assert r.code != 0 and "Traceback" in r.err
