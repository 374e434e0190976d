"""The web editor's callbacks, without a browser (tests/test_app_browser.py drives the page itself)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

gradio = pytest.importorskip("gradio", reason="the web editor is an extra: pip install 'scadm[app]'")

from scadm.app import APPLICATIONS, Editor, build_page  # noqa: E402


@pytest.fixture(scope="module")
def editor(tiny_model):
    return Editor(tiny_model, device="cpu", examples=3)


def _inputs(editor):
    target, target_mask = editor.example("face 1")
    reference, reference_mask = editor.example("face 2", "reference")
    return target, editor.editor_value(target_mask), reference, reference_mask


def _paint(editor, value, name, rows, cols):
    """A stroke of class `name` over rows x cols, as the editor's composite gives it (slightly off-palette)."""
    composite = np.array(value["background"], copy=True)
    r, g, b = editor.shown.colors[editor.label_set.names.index(name)]  # the page's display colours
    composite[rows, cols] = (min(r + 3, 255), max(g - 2, 0), b)  # a stroke's colour is near, not on, the palette
    return {**value, "composite": composite}


@pytest.mark.parametrize("application", APPLICATIONS)
def test_every_application_runs_from_the_page(editor, application):
    target, mask, reference, reference_mask = _inputs(editor)
    if application == "edit with the painted mask":
        mask = _paint(editor, mask, "hair", slice(0, 10), slice(0, 32))
    r = editor.run(application, target, mask, reference, reference_mask, ["l_eye", "hair"], alpha=1.0, frames=3, n=2,
                   steps=2, seed=3, progress=False)
    expected = {"interpolation": 3, "noise-based generation": 2, "mixed": 2}.get(application, 1)
    assert len(r.images) == expected and r.images[0][0].size == (32, 32)
    assert Image.open(r.result_file).size == (32, 32) and Image.open(r.mask_file).size == (32, 32)
    assert application in r.status and "seed 3" in r.status


def test_the_page_calls_the_same_pipeline_as_the_cli(editor):
    """A partial swap from the page equals the pipeline's (the CLI's function): an example face, at the
    model's size, is a crop (no framing, no warnings); a larger photo is framed; both keep the rest of it."""
    from scadm.photos import Photo
    from scadm.pipeline import Face

    target, mask, reference, reference_mask = _inputs(editor)
    pipe = editor.pipe
    ref_ids = editor.mask_ids(reference_mask, "r")
    crop = editor.run("partial swap", target, mask, reference, reference_mask, ["l_eye"], steps=2, seed=5,
                      progress=False)
    ids = editor.mask_ids(mask["background"], "m")
    direct = pipe.swap(Photo.of_crop(target, ids), Face(reference, ref_ids), ["l_eye"], steps=2, seed=5)
    assert np.array_equal(np.asarray(crop.images[0][0]), np.asarray(direct.photos[0]))
    as_crop = pipe.swap(Face(target, ids), Face(reference, ref_ids), ["l_eye"], steps=2, seed=5)
    assert torch.equal(as_crop.tensors, direct.tensors)  # the same edit as the crop itself, pasted back
    assert "warning" not in crop.status and "at the model's size" in crop.status
    # the same face as a 2x photo: framed, and pasted back into it
    target = np.asarray(Image.fromarray(target).resize((64, 64), Image.Resampling.NEAREST))
    ids = np.asarray(Image.fromarray(editor.mask_ids(mask["background"], "m")).resize((64, 64), Image.Resampling.NEAREST))
    shown = editor.editor_value(editor.shown.colorize(ids).astype(np.uint8))
    r = editor.run("partial swap", target, shown, reference, reference_mask, ["l_eye"], steps=2, seed=5, progress=False)
    direct = pipe.swap(pipe.inputs.photo(target, ids), Face(reference, ref_ids), ["l_eye"], steps=2, seed=5)
    got = np.asarray(r.images[0][0])
    assert np.array_equal(got, np.asarray(direct.photos[0]))
    from scadm.photos import edit_region

    photo = pipe.inputs.photo(target, ids)
    weight = np.zeros(ids.shape, np.float32)
    box = photo.box
    region = edit_region(photo, [editor.label_set.names.index("l_eye")])
    y0, x0 = max(box.y0, 0), max(box.x0, 0)
    weight[y0:box.y0 + box.side, x0:box.x0 + box.side] = region[y0 - box.y0:, x0 - box.x0:][:ids.shape[0] - y0, :ids.shape[1] - x0]
    assert np.array_equal(got[weight == 0], target[weight == 0])  # bit-identical outside the eye's region
    assert (weight > 0).sum() < ids.size / 4


def test_painted_strokes_snap_to_the_palette_and_change_only_where_painted(editor):
    _, mask, _, _ = _inputs(editor)
    painted = _paint(editor, mask, "hair", slice(2, 6), slice(4, 20))
    blend = painted["composite"]
    blend[7, 4:20] = (blend[7, 4:20].astype(int) + np.array(editor.shown.colors[1])) // 2  # an anti-aliased edge
    before, after = editor.painted_masks(painted)
    hair = editor.label_set.names.index("hair")
    assert (after[2:6, 4:20] == hair).all()
    assert np.array_equal(after[7], before[7])  # a blend of two colours is no class: the edge keeps its class
    outside = np.ones_like(before, bool)
    outside[2:6, 4:20] = False
    outside[7] = False
    assert np.array_equal(before[outside], after[outside])


@pytest.mark.parametrize("bad, words", [
    ("unknown colour", "(1, 2, 3)"),
    ("wrong size", "give the mask of this face"),
    ("no mask", "a target mask"),
    ("no parts", "at least one part (tick it)"),
    ("no reference", "a reference face"),
    ("bad steps", "steps -1"),
    ("nothing painted", "paint on the target mask first"),
])
def test_bad_uploads_are_the_clis_one_line_messages(editor, bad, words):
    target, mask, reference, reference_mask = _inputs(editor)
    app, parts, steps = "partial swap", ["l_eye"], 2
    if bad == "unknown colour":
        weird = np.full_like(mask["background"], (1, 2, 3))
        mask = editor.editor_value(weird)
    elif bad == "wrong size":
        target = np.zeros((48, 48, 3), np.uint8)
    elif bad == "no mask":
        mask = None
    elif bad == "no parts":
        parts = []
    elif bad == "no reference":
        reference = None
    elif bad == "bad steps":
        steps = -1
    elif bad == "nothing painted":
        app = "edit with the painted mask"
    with pytest.raises(ValueError) as err:
        editor.run(app, target, mask, reference, reference_mask, parts, steps=steps, progress=False)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_page_builds_and_shows_errors_as_one_line(editor):
    page = build_page(editor)
    assert page is not None
    import gradio as gr

    from scadm.app import checks

    assert checks.describe(ValueError("target mask: give a mask")) == "target mask: give a mask"
    assert checks.describe(RuntimeError("boom")) == "failed unexpectedly: RuntimeError: boom"
    assert issubclass(gr.Error, Exception)


def test_an_uploaded_photo_without_a_mask_is_parsed(editor, tmp_path):
    """A tiny model folder has no parser, and the bundled model's knows only synthetic faces, so it is not
    used unless named: a one-line error says where to get one. Named, it parses the example faces."""
    target, _, _, _ = _inputs(editor)
    if editor.pipe.photo_parser is None:
        with pytest.raises(ValueError, match="79999_iter.pth"):
            editor.parse(target)
    from scadm.app import Editor as BundledEditor
    from scadm.pipeline import DEFAULT_MODEL

    with pytest.raises(ValueError, match="knows only scadm synthetic faces"):
        BundledEditor(device="cpu", examples=1).parse(target)
    bundled = BundledEditor(device="cpu", examples=1, parser=DEFAULT_MODEL / "face_parser")
    face, mask = bundled.example("face 1")
    parsed = bundled.mask_ids(bundled.parse(face), "parsed")
    assert parsed.shape == face.shape[:2]
    assert (parsed == bundled.mask_ids(mask, "m")).mean() > 0.8  # the bundled parser knows these faces


def test_generation_from_a_mask_alone_gives_the_crops(editor):
    _, mask, reference, reference_mask = _inputs(editor)
    r = editor.run("noise-based generation", None, mask, None, None, [], n=2, steps=2, progress=False)
    assert len(r.images) == 2 and r.images[0][0].size == (32, 32) and "no target photo" in r.status
    grey = (np.asarray(r.images[0][0]) == 127).all(-1).mean()
    assert grey < 0.05  # no frame of a placeholder photo around the face
    r = editor.run("mixed", None, mask, reference, reference_mask, ["hair"], n=1, steps=2, progress=False)
    assert len(r.images) == 1
    with pytest.raises(ValueError, match="a reference face"):
        editor.run("mixed", None, mask, None, None, ["hair"], steps=2, progress=False)


def test_run_with_nothing_chosen_names_everything_missing_at_once(editor):
    with pytest.raises(ValueError) as err:
        editor.run("partial swap", None, None, None, None, [], steps=2, progress=False)
    text = str(err.value)
    assert text.startswith("partial swap needs") and "\n" not in text
    for words in ("a target face", "a target mask", "a reference face", "at least one part"):
        assert words in text, text


def test_the_parser_given_to_the_app_is_the_one_it_uses(tiny_model):
    from scadm.pipeline import DEFAULT_MODEL

    editor = Editor(tiny_model, parser=DEFAULT_MODEL / "face_parser", device="cpu", examples=1)
    assert editor.pipe.photo_parser is not None


def test_a_port_in_use_is_one_line_naming_it(run_cli):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli("app", "--port", port)
    assert r.code == 1 and r.err.strip().count("\n") == 0, r.err
    assert f"port {port}" in r.err and "--port" in r.err and "Traceback" not in r.err


def test_small_results_are_shown_enlarged_by_whole_factors():
    from scadm.app import enlarged

    face = Image.fromarray(np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3))
    big = enlarged(face)
    assert big.size == (256, 256) and np.array_equal(np.asarray(big)[::4, ::4], np.asarray(face))
    photo = Image.new("RGB", (512, 300))
    assert enlarged(photo) is photo  # large images are shown as they are


def test_the_clis_warnings_reach_the_status_line(editor, monkeypatch):
    """A photo whose face's square leaves the frame warns on the page as the CLI does (once)."""
    target, mask, reference, reference_mask = _inputs(editor)
    img = np.asarray(target)
    cut = img[:, : img.shape[1] * 3 // 4]  # the face's square now leaves the photo on the right
    ids = editor.mask_ids(mask["background"], "m")[:, : img.shape[1] * 3 // 4]
    value = editor.editor_value(editor.shown.colorize(ids).astype(np.uint8))
    r = editor.run("partial swap", cut, value, reference, reference_mask, ["l_eye"], steps=2, progress=False)
    assert "warning: " in r.status and "leaves the photo" in r.status
    said = r.status.split("; warning: ")[1:]
    assert len(said) == len(set(said))  # each once


def test_the_page_shows_19_colours_far_apart_and_files_keep_the_official_ones(editor, tmp_path):
    from scadm.labels import CELEBAMASK_HQ

    shown = np.asarray(editor.shown.colors, dtype=float)
    d = np.sqrt(((shown[:, None] - shown[None]) ** 2).sum(-1)) + np.eye(len(shown)) * 1e9
    official = np.asarray(CELEBAMASK_HQ.colors, dtype=float)
    d0 = np.sqrt(((official[:, None] - official[None]) ** 2).sum(-1)) + np.eye(len(official)) * 1e9
    assert len(shown) == 19 and d.min() >= 55 and d.min() > d0.min()  # every pair further apart than the official closest
    assert all(c in editor.legend_html() for c in editor.palette)
    target, mask, reference, reference_mask = _inputs(editor)
    r = editor.run("partial swap", target, mask, reference, reference_mask, ["l_eye"], steps=2, progress=False)
    downloaded = np.asarray(Image.open(r.mask_file).convert("RGB"))
    from scadm.data.layout import ids_from_rgb

    assert np.array_equal(ids_from_rgb(downloaded, CELEBAMASK_HQ, "download"),
                          editor.mask_ids(mask["background"], "shown"))  # the download is official colours
    # an uploaded official-colour mask is read by the CLI's rule and shown in the page's colours
    path = tmp_path / "official.png"
    Image.fromarray(downloaded).save(path)
    assert np.array_equal(editor.mask_ids(editor.uploaded_mask(path), "shown"), editor.mask_ids(mask["background"], "s"))


def test_uploads_go_to_a_private_folder(monkeypatch):
    import os
    import stat

    from scadm.app import private_uploads

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    folder = private_uploads()
    assert os.environ["GRADIO_TEMP_DIR"] == str(folder) and folder.is_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # only this user reads what was uploaded


def test_the_status_says_how_each_mask_was_obtained(editor, tiny_model):
    from scadm.pipeline import DEFAULT_MODEL

    target, mask, reference, reference_mask = _inputs(editor)
    r = editor.run("partial swap", target, mask, reference, reference_mask, ["l_eye"], steps=2, progress=False)
    assert "target mask: the example's own (face 1)" in r.status and "reference mask: the example's own" in r.status
    editor.uploaded_mask(reference_mask, "reference")
    painted = _paint(editor, mask, "hair", slice(0, 4), slice(0, 32))
    r = editor.run("partial swap", target, painted, reference, reference_mask, ["l_eye"], steps=2, progress=False)
    assert "painted over" in r.status and "reference mask: uploaded" in r.status
    # a reference photo is parsed like a target (here by a named parser of synthetic faces, on a synthetic face)
    named = Editor(None, parser=DEFAULT_MODEL / "face_parser", device="cpu", examples=2)  # the bundled model, 64 px
    face, _ = named.example("face 2", "reference")
    named.parse(face, "reference")
    assert named.mask_source["reference"].startswith("parsed by")


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (its data is one empty row: never decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("kind, words", [
    ("not an image", "not an image file"),
    ("truncated", "truncated or corrupt"),
    ("declares 10000 x 10000", "decompression bomb"),
])
def test_a_bad_upload_is_one_line_before_decoding(editor, tmp_path, kind, words):
    import time

    good = tmp_path / "face.png"
    Image.fromarray(editor.example("face 1")[0]).save(good)
    path = tmp_path / "upload.png"
    if kind == "not an image":
        path.write_text("hello, I am a text file")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:200])
    else:
        path.write_bytes(_png_declaring(10_000, 10_000))
    t0 = time.perf_counter()
    for read in (lambda: editor.uploaded_photo(path), lambda: editor.uploaded_mask(path)):
        with pytest.raises(ValueError) as err:
            read()
        text = str(err.value)
        assert words in text and "upload.png" in text and str(tmp_path) not in text and "\n" not in text, text
    assert time.perf_counter() - t0 < 5  # refused, not decoded
    assert editor.uploaded_photo(good).shape == (32, 32, 3)  # a good upload after a bad one works


def test_an_uploaded_mask_of_unknown_colours_is_refused(editor, tmp_path):
    path = tmp_path / "mask.png"
    Image.fromarray(np.full((32, 32, 3), (1, 2, 3), np.uint8)).save(path)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\)"):
        editor.uploaded_mask(path)


def test_the_readme_gradio_client_script_edits_through_the_page(tmp_path, monkeypatch):
    """The README's scripted edit, run as written against a page served on this machine."""
    import re
    import socket
    from pathlib import Path

    pytest.importorskip("gradio_client")
    from scadm.app import serve
    from scadm.data.synthetic import render_face, synthetic_split_ids
    from scadm.labels import CELEBAMASK_HQ

    for name, i in (("face", 0), ("ref", 1)):  # the files the script names
        face = render_face(synthetic_split_ids("test", 2)[i], size=64)
        Image.fromarray(face.image).save(tmp_path / f"{name}.png")
        Image.fromarray(CELEBAMASK_HQ.colorize(face.label).astype(np.uint8)).save(tmp_path / f"{name}_mask.png")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    page = serve(None, port=port, block=False, device="cpu", printer=lambda *_: None)
    try:
        text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
        code = re.search(r"```python\n(from gradio_client.*?)```", text, flags=re.S).group(1)
        code = code.replace("http://127.0.0.1:7860/", f"http://127.0.0.1:{port}/")
        monkeypatch.chdir(tmp_path)
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the project's own docs
        # the page opens with example faces and a part chosen: Run works at once, with no argument given
        opened = scope["client"].predict(api_name="/edit")[-1]
        assert opened.startswith("partial swap: 1 image(s) of 64x64") and "the example's own (face 1)" in opened
        assert "warning" not in opened  # the examples are crops at the model's size: nothing framed
    finally:
        page.close()
    assert scope["status"].startswith("partial swap: 1 image(s) of 64x64, dpm++ 9 steps")
    edited = np.asarray(Image.open(scope["result_file"]))
    target = np.asarray(Image.open(tmp_path / "face.png"))
    assert edited.shape == target.shape and not np.array_equal(edited, target)
