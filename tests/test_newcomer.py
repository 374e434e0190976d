"""What a newcomer meets first: a model and its parser say what they know, and a real photo with the
bundled (synthetic-face) model is refused in one clear line by `parse`, every `edit`, the API and the page,
instead of an edit the model could not have meant."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BUNDLED_PARSER = Path(__file__).resolve().parents[1] / "src" / "scadm" / "bundled" / "synthetic-64" / "face_parser"


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.origin, "scikit-image is missing: install the test extra"
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.open(Path(spec.origin).parent / "data" / "astronaut.png").convert("RGB").save(path)
    return path


@pytest.fixture(autouse=True)
def _no_parser_env(monkeypatch):
    monkeypatch.delenv("SCADM_PARSER", raising=False)


def test_info_says_what_the_bundled_model_and_its_parser_know(run_cli):
    r = run_cli("info")
    assert r.code == 0, r.err
    assert "trained on: scadm synthetic faces" in r.out and "knows scadm synthetic faces" in r.out
    assert "inversion virtual" in r.out  # the bundled model edits a given face by virtual inversion
    r = run_cli("info", "--config", "tiny", "--model", BUNDLED_PARSER.parent)
    assert r.code == 1 and "not both" in r.err


EDITS = {
    "swap": lambda a: ["edit", "swap", "--target", a, "--reference", a, "--reference-mask", "{mask}", "--parts", "hair"],
    "swap l_eye": lambda a: ["edit", "swap", "--target", a, "--reference", a, "--reference-mask", "{mask}",
                             "--parts", "l_eye"],
    "reconstruct": lambda a: ["edit", "reconstruct", "--image", a],
    "edit-mask": lambda a: ["edit", "edit-mask", "--image", a, "--new-mask", "{mask}"],
}


@pytest.fixture(scope="module")
def synthetic_mask(tmp_path_factory) -> Path:
    from scadm.data.synthetic import render_face

    path = tmp_path_factory.mktemp("mask") / "mask.png"
    Image.fromarray(render_face(1_000_000, size=512).label).save(path)
    return path


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_photo_with_the_bundled_model_is_one_clear_line(run_cli, astronaut, synthetic_mask, tmp_path, edit):
    """No parser runs implicitly (the bundled one knows only synthetic faces); named, it parses no plausible
    face. Either way: exit 1, one line naming the photo, what to do and where 79999_iter.pth comes from."""
    argv = [str(synthetic_mask) if w == "{mask}" else w for w in EDITS[edit](astronaut)]
    for extra, words in (([], "knows only scadm synthetic faces"),
                         (["--parser", BUNDLED_PARSER], "not a plausible face")):
        r = run_cli(*argv, *extra, "--steps", "2", "--out", tmp_path / "out.png")
        assert r.code == 1 and r.err.strip().count("\n") == 0, r.err
        assert words in r.err and "79999_iter.pth" in r.err and "scadm fetch parser" in r.err, r.err
        assert "astronaut.png" in r.err
    assert not any(tmp_path.iterdir())


def test_parse_says_what_to_do_without_mask_options(run_cli, astronaut, tmp_path):
    for extra, words in (([], "knows only scadm synthetic faces"), (["--parser", BUNDLED_PARSER], "not a plausible face"),
                         (["--parser", tmp_path / "79999_iter.pth"], "no such file")):
        r = run_cli("parse", astronaut, *extra, "--out", tmp_path / "m.png")
        assert r.code == 1 and words in r.err and "79999_iter.pth" in r.err and "--mask" not in r.err, r.err
    assert not any(tmp_path.iterdir())


def test_the_api_and_the_page_say_the_same(astronaut, synthetic_mask):
    from scadm.pipeline import Face, SCADMPipeline

    pipe = SCADMPipeline.from_pretrained(None, device="cpu")
    with pytest.raises(ValueError, match="knows only scadm synthetic faces") as exc:
        pipe.swap(Face(astronaut), Face(astronaut, synthetic_mask), ["hair"], steps=2)
    assert "79999_iter.pth" in str(exc.value)
    named = SCADMPipeline.from_pretrained(None, device="cpu", parser=BUNDLED_PARSER)
    with pytest.raises(ValueError, match="not a plausible face"):
        named.reconstruct(astronaut, steps=2)
    pytest.importorskip("gradio")
    from scadm.app import Editor

    editor = Editor(None, device="cpu", examples=1)
    assert "trained on scadm synthetic faces" in f"trained on {editor.knows}"
    photo = np.asarray(Image.open(astronaut))
    with pytest.raises(ValueError, match="knows only scadm synthetic faces"):
        editor.parse(photo)
    editor = Editor(None, device="cpu", examples=1, parser=BUNDLED_PARSER)
    with pytest.raises(ValueError, match="not a plausible face"):
        editor.parse(photo)


def test_swapping_a_part_the_target_lacks_says_so(run_cli, tmp_path):
    from scadm.data.synthetic import render_face

    f, g = render_face(1_000_000, size=64), render_face(1_000_001, size=64)
    assert not (f.label == 14).any()  # this face wears no hat
    for name, face in (("t", f), ("r", g)):
        Image.fromarray(face.image).save(tmp_path / f"{name}.png")
        Image.fromarray(face.label).save(tmp_path / f"{name}_mask.png")
    r = run_cli("edit", "swap", "--target", tmp_path / "t.png", "--target-mask", tmp_path / "t_mask.png",
                "--reference", tmp_path / "r.png", "--reference-mask", tmp_path / "r_mask.png", "--parts", "hat,hair",
                "--steps", "2", "--out", tmp_path / "o.png")
    assert r.code == 0, r.err
    assert "warning: the target has no hat in its mask, so that part is not edited" in r.err
