"""Real photos (scadm.photos): loading, framing, cropping, parsing, paste-back, and the photo path
of the pipeline and the CLI.

The photograph is scikit-image's ``astronaut.png`` (Eileen Collins, NASA, public domain; 512 x 512),
read from the installed wheel of the pinned test extra (no network); its mask is drawn below.
"""

from __future__ import annotations

import importlib.util
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scadm.labels import CELEBAMASK_HQ as L
from scadm.photos import (
    Framing,
    PhotoWarning,
    edit_region,
    feather_radius,
    frame_face,
    implausible_face,
    load_face_parser,
    load_photo,
    parse_photo,
    paste_back,
    prepare_photo,
)

FAST = ["--steps", "2"]
HAIR = L.index("hair")


def _astronaut_path() -> Path:
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.origin, "scikit-image is missing: install the test extra (pip install -e .[test])"
    path = Path(spec.origin).parent / "data" / "astronaut.png"
    assert path.is_file(), f"{path} is not in the installed scikit-image wheel"
    return path


def _ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def draw_astronaut_mask(h: int = 512, w: int = 512) -> np.ndarray:
    """The astronaut's face parts, drawn by hand as ellipses (photo pixels of the 512 px image)."""
    m = np.zeros((h, w), np.uint8)
    parts = [("cloth", 225, 330, 150, 110), ("neck", 222, 170, 40, 40), ("hair", 226, 75, 78, 62),
             ("hair", 168, 105, 22, 45), ("hair", 280, 100, 22, 45), ("skin", 224, 122, 47, 62),
             ("r_eye", 204, 112, 9, 4), ("l_eye", 243, 112, 9, 4), ("r_brow", 203, 101, 12, 3),
             ("l_brow", 245, 101, 12, 3), ("nose", 224, 130, 8, 10), ("mouth", 224, 146, 18, 5),
             ("u_lip", 224, 141, 17, 3), ("l_lip", 224, 151, 15, 3)]
    for name, *e in parts:
        m[_ellipse(h, w, *e)] = L.index(name)
    return m


@pytest.fixture(scope="module")
def astronaut():
    return np.asarray(Image.open(_astronaut_path()).convert("RGB"))


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory, astronaut):
    """The photo, its drawn mask, and a mirrored copy (another 'person') with its mask, as files."""
    root = tmp_path_factory.mktemp("photos")
    mask = draw_astronaut_mask()
    flipped = L.flip_permutation()[np.fliplr(mask)].astype(np.uint8)
    paths = {"photo": root / "astronaut.png", "mask": root / "astronaut_mask.png",
             "ref": root / "mirrored.png", "ref_mask": root / "mirrored_mask.png"}
    Image.fromarray(astronaut).save(paths["photo"])
    Image.fromarray(mask).save(paths["mask"])
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(paths["ref"])
    Image.fromarray(flipped).save(paths["ref_mask"])
    return paths


@pytest.fixture(scope="module")
def rigged_bisenet(tmp_path_factory):
    """A random-weight BiSeNet saved in face-parsing.PyTorch's key layout, whose first head says 'nose'
    (its own id 10) wherever its features are positive: a parse with a known answer."""
    from scadm.models.face_parser import BiSeNet

    torch.manual_seed(0)
    net = BiSeNet(19).eval()
    with torch.no_grad():
        w = net.conv_out.conv_out.weight
        w.zero_()
        w[10] = 1.0
    path = tmp_path_factory.mktemp("parser") / "79999_iter.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def _no_parser_env(monkeypatch):
    monkeypatch.delenv("SCADM_PARSER", raising=False)
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------- framing
def test_framing_is_celebahq_rule_from_the_drawn_mask(astronaut):
    mask = draw_astronaut_mask()
    with pytest.warns(PhotoWarning, match="smaller than the model's 256"):
        photo = prepare_photo(astronaut, mask, size=256)
    # CelebA-HQ's rule by hand: eyes (204, 112) and (243, 112), mouth ~ (224, 146)
    eyes = np.array([223.5, 112.0])
    mouth = np.array([np.nonzero(np.isin(mask, [10, 11, 12]))[1].mean(), np.nonzero(np.isin(mask, [10, 11, 12]))[0].mean()])
    e2m = mouth - eyes
    side = 2 * max(2.0 * 39.0, 1.8 * np.hypot(*e2m))
    centre = eyes + 0.1 * e2m
    assert abs(photo.box.side - side) <= 2
    assert abs(photo.box.x0 + photo.box.side / 2 - centre[0]) <= 1.5
    assert abs(photo.box.y0 + photo.box.side / 2 - centre[1]) <= 1.5
    assert photo.crop.shape == (256, 256, 3) and photo.crop_mask.shape == (256, 256)
    # in the crop, the eyes sit a little above the middle and the mouth below it, as in CelebA-HQ
    ys = np.nonzero(np.isin(photo.crop_mask, [L.index("l_eye"), L.index("r_eye")]))[0].mean() / 256
    ym = np.nonzero(np.isin(photo.crop_mask, [10, 11, 12]))[0].mean() / 256
    assert 0.42 < ys < 0.5 and 0.6 < ym < 0.75
    # the crop is the photo's pixels there (not a resize of the whole photo)
    x0, y0, s = photo.box.x0, photo.box.y0, photo.box.side
    small = np.asarray(Image.fromarray(astronaut[y0:y0 + s, x0:x0 + s]).resize((256, 256), Image.Resampling.LANCZOS))
    assert np.abs(small.astype(int) - photo.crop).max() <= 2
    # a wider framing keeps the centre
    with pytest.warns(PhotoWarning, match="leaves the photo"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "image: the face's square is", PhotoWarning)
        wide = prepare_photo(astronaut, mask, size=256, framing=Framing(1.5))
    assert abs(wide.box.side - 1.5 * photo.box.side) <= 2
    assert abs((wide.box.x0 + wide.box.side / 2) - (photo.box.x0 + photo.box.side / 2)) <= 1


def test_framing_without_landmarks_uses_the_face_extent_and_rejects_faceless_masks():
    mask = np.zeros((400, 300), np.uint8)
    mask[_ellipse(400, 300, 150, 200, 50, 65)] = L.index("skin")
    box = frame_face(mask)
    assert abs(box.side - max(2.0 * 101, 1.6 * 131)) <= 2
    assert abs(box.x0 + box.side / 2 - 150) <= 1 and box.y0 + box.side / 2 < 200
    with pytest.raises(ValueError, match="no face in the mask"):
        frame_face(np.zeros((50, 50), np.uint8))


def test_a_face_at_the_border_is_padded_and_pasted_back_only_inside(astronaut):
    img, mask = astronaut[70:, 190:], draw_astronaut_mask()[70:, 190:]  # forehead and right cheek cut off
    with pytest.warns(PhotoWarning, match="leaves the photo"):
        photo = prepare_photo(img, mask, size=64)
    h, w = img.shape[:2]
    assert photo.box.x0 < 0 and photo.box.y0 < 0
    # outside the photo the crop repeats the edge pixels
    left = -photo.box.x0 * 64 // photo.box.side
    assert left >= 2 and np.abs(photo.crop[:, 0].astype(int) - photo.crop[:, left - 1]).mean() < 12
    gen = 255 - photo.crop
    out = paste_back(photo, gen)
    assert out.shape == img.shape
    x1, y1 = photo.box.x0 + photo.box.side, photo.box.y0 + photo.box.side
    changed = (out != img).any(2)
    assert changed[:y1, :x1].mean() > 0.5 and not changed[y1:].any() and not changed[:, x1:].any()
    # no ramp along the photo's own border: the first row and column are fully the generated crop
    assert changed[0, : x1 - feather_radius(photo.box.side)].mean() > 0.99


def test_a_small_face_is_upsampled_with_a_warning(astronaut):
    small = np.asarray(Image.fromarray(astronaut).resize((128, 128), Image.Resampling.LANCZOS))
    mask = np.asarray(Image.fromarray(draw_astronaut_mask()).resize((128, 128), Image.Resampling.NEAREST))
    with pytest.warns(PhotoWarning, match="smaller than the model's 64 px"):
        photo = prepare_photo(small, mask, size=64)
    assert photo.box.side < 64 and photo.crop.shape == (64, 64, 3)
    out = paste_back(photo, photo.crop, parts=[HAIR])
    assert out.shape == small.shape


# ------------------------------------------------------------------------------------------- paste-back
def test_paste_back_changes_only_the_grown_edited_parts(astronaut):
    mask = draw_astronaut_mask()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhotoWarning)
        photo = prepare_photo(astronaut, mask, size=64)
    gen = 255 - photo.crop  # every generated pixel differs from the photo
    out = paste_back(photo, gen, parts=[HAIR])
    alpha = np.zeros(mask.shape, np.float32)
    b = photo.box
    alpha[b.y0:b.y0 + b.side, b.x0:b.x0 + b.side] = edit_region(photo, [HAIR])
    outside = alpha == 0
    assert np.array_equal(out[outside], astronaut[outside])  # bit-identical outside the edit region
    changed = (out != astronaut).any(2)
    assert changed.sum() > 0.9 * (alpha > 0).sum()
    # the region is the hair (inside the square) grown by at most 2 r, and it covers all of that hair
    from scipy import ndimage

    r = feather_radius(b.side)
    hair = np.zeros_like(outside)
    hair[b.y0:b.y0 + b.side, b.x0:b.x0 + b.side] = mask[b.y0:b.y0 + b.side, b.x0:b.x0 + b.side] == HAIR
    near = ndimage.distance_transform_edt(~hair) < 2 * r
    assert not (changed & ~near).any()
    inner = ndimage.binary_erosion(hair, iterations=r + 2) & (alpha == 1)
    assert changed[inner].mean() > 0.99
    # a face with no such part is left as it was
    with pytest.warns(PhotoWarning, match="unchanged"):
        same = paste_back(photo, gen, parts=[L.index("hat")])
    assert np.array_equal(same, astronaut)
    # the whole-face region is the square, feathered at its edges
    full = paste_back(photo, gen)
    box_mask = np.zeros_like(outside)
    box_mask[b.y0:b.y0 + b.side, b.x0:b.x0 + b.side] = True
    assert np.array_equal(full[~box_mask], astronaut[~box_mask]) and (full != astronaut).any(2)[box_mask].mean() > 0.95


# ------------------------------------------------------------------------------------------- loading
def test_exif_orientation_is_applied_once_with_a_warning(tmp_path, astronaut):
    # a camera that stored the picture turned and wrote orientation 6 ("rotate 90 CW to view")
    stored = Image.fromarray(astronaut).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.png"
    stored.save(path, exif=exif)
    with pytest.warns(PhotoWarning, match="EXIF orientation 6") as rec:
        arr, _ = load_photo(path)
    assert len([w for w in rec if "EXIF" in str(w.message)]) == 1
    assert np.array_equal(arr, astronaut)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhotoWarning)
        photo = prepare_photo(path, draw_astronaut_mask(), size=64)
        upright = prepare_photo(astronaut, draw_astronaut_mask(), size=64)
    assert photo.box == upright.box
    with pytest.raises(ValueError, match="photo's size"), warnings.catch_warnings():
        warnings.simplefilter("ignore", PhotoWarning)
        prepare_photo(path, draw_astronaut_mask()[:, :300], size=64)  # wrong size -> clear error
    with pytest.raises(ValueError, match="once turned upright"), warnings.catch_warnings():
        warnings.simplefilter("ignore", PhotoWarning)
        wide = tmp_path / "wide.png"
        exif[0x0112] = 6
        Image.fromarray(astronaut[:256]).transpose(Image.Transpose.ROTATE_90).save(wide, exif=exif)
        prepare_photo(wide, np.zeros((256, 512), np.uint8).T, size=64)


def _png16_rgb(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow reads such files but does not write them)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_greyscale_rgba_and_16_bit_are_converted_with_one_warning_each(tmp_path, astronaut):
    grey, rgba, deep = tmp_path / "grey.png", tmp_path / "rgba.png", tmp_path / "deep.png"
    Image.fromarray(astronaut).convert("L").save(grey)
    Image.fromarray(astronaut).convert("RGBA").save(rgba)
    _png16_rgb(deep, astronaut[:32, :32].astype(np.uint16) * 257)
    for path, words, check in ((grey, "greyscale", lambda a: (a[..., 0] == a[..., 2]).all()),
                               (rgba, "alpha channel dropped", lambda a: np.array_equal(a, astronaut)),
                               (deep, "16-bit", lambda a: np.array_equal(a, astronaut[:32, :32]))):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            arr, _ = load_photo(path)
        said = [str(w.message) for w in rec if issubclass(w.category, PhotoWarning)]
        assert len(said) == 1 and words in said[0], (path.name, said)
        assert arr.dtype == np.uint8 and arr.shape[2] == 3 and check(arr), path.name
    junk = tmp_path / "photo.jpg"
    junk.write_text("not a picture")
    with pytest.raises(ValueError, match="not an image file") as exc:
        load_photo(junk)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------------- parsing
def test_the_released_bisenet_layout_parses_a_photo_into_the_model_labels(rigged_bisenet, astronaut):
    fp = load_face_parser(rigged_bisenet)
    assert fp.input_size == 512
    mask, box = parse_photo(astronaut, fp)
    assert mask.shape == astronaut.shape[:2]
    # its class 10 (nose, in face-parsing.PyTorch's order) arrives as the official id 2
    assert set(np.unique(mask)) <= {0, L.index("nose")} and (mask == L.index("nose")).mean() > 0.3
    assert box == frame_face(mask)  # a parse written out and given back as --mask frames the same face
    # the whole photo 'nose' is no face: refused in one line that says what to do, before any work
    with pytest.raises(ValueError, match="not a plausible face") as exc:
        prepare_photo(astronaut, None, size=64, parser=fp)
    assert "79999_iter.pth" in str(exc.value) and "--mask" in str(exc.value) and "\n" not in str(exc.value)


def _parse_like_a_face(monkeypatch) -> None:
    """Every photo parses to the hand-drawn astronaut mask (a parser that sees a real face)."""
    import scadm.photos as P

    def parse(image, parser, label_set=L, framing=Framing(), passes=3, source="photo", mask_option="--mask"):
        m = np.asarray(Image.fromarray(draw_astronaut_mask()).resize(image.shape[1::-1], Image.NEAREST))
        return m, frame_face(m, label_set, framing)

    monkeypatch.setattr(P, "parse_photo", parse)


@pytest.fixture
def face_like_parse(monkeypatch):
    _parse_like_a_face(monkeypatch)


def test_a_parsed_face_must_be_plausible():
    m = draw_astronaut_mask()
    box = frame_face(m)
    assert implausible_face(m, box) is None
    nose = np.full_like(m, L.index("nose"))
    assert implausible_face(nose, box) == "no skin around the face"
    no_eyes = m.copy()
    no_eyes[np.isin(m, [L.index("l_eye"), L.index("r_eye")])] = L.index("skin")
    assert implausible_face(no_eyes, frame_face(no_eyes)) == "no eyes inside the face"
    upside_down = m[::-1].copy()
    assert implausible_face(upside_down, frame_face(upside_down)) == "the eyes, nose and mouth are not one above the other"
    from scadm.data.synthetic import render_face

    for i in range(20):  # every synthetic face is a plausible one
        f = render_face(1_000_000 + i, size=64)
        assert implausible_face(f.label, frame_face(f.label)) is None, i


def test_no_mask_and_no_parser_says_where_to_get_one(astronaut):
    with pytest.raises(ValueError, match="79999_iter.pth") as exc:
        prepare_photo(astronaut, None, size=64)
    assert "scadm fetch parser" in str(exc.value) and "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------------- pipeline and CLI
@pytest.fixture(scope="module")
def pipe(tiny_model):
    from scadm.pipeline import SCADMPipeline

    return SCADMPipeline.from_pretrained(tiny_model, device="cpu")


def _region(photo, parts) -> np.ndarray:
    a = np.zeros(photo.image.shape[:2], np.float32)
    b, (h, w) = photo.box, photo.image.shape[:2]
    x0, y0, x1, y1 = b.visible(h, w)
    a[y0:y1, x0:x1] = edit_region(photo, parts)[y0 - b.y0:y1 - b.y0, x0 - b.x0:x1 - b.x0]
    return a


def test_api_partial_swap_of_a_photo_changes_only_the_hair(pipe, photo_files, astronaut):
    from scadm.pipeline import Face

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhotoWarning)
        r = pipe.swap(Face(photo_files["photo"], photo_files["mask"]), Face(photo_files["ref"], photo_files["ref_mask"]),
                      ["hair"], steps=2)
    assert r.images[0].size == (32, 32)  # the crop, as before
    [full] = r.photos
    assert full.size == (512, 512)
    out = np.asarray(full)
    outside = _region(r.sources[0], [HAIR]) == 0
    assert np.array_equal(out[outside], astronaut[outside]) and (out != astronaut).any()
    # a crop at the model's size with its mask stays a crop: no photo, same result as before
    crop = pipe.reconstruct(r.sources[0].crop, r.sources[0].crop_mask, steps=2)
    assert crop.photos == [] and crop.images[0].size == (32, 32)


def test_api_without_a_mask_uses_the_parser_rule(tiny_model, rigged_bisenet, photo_files, monkeypatch, astronaut,
                                                 face_like_parse):
    from scadm.pipeline import Face, SCADMPipeline

    plain = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    with pytest.raises(ValueError, match="needs its mask"):
        plain.reconstruct(photo_files["photo"])
    monkeypatch.setenv("SCADM_PARSER", str(rigged_bisenet))
    via_env = SCADMPipeline.from_pretrained(tiny_model, device="cpu")
    assert "SCADM_PARSER" in via_env.photo_parser.source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhotoWarning)
        r = via_env.mix(Face(photo_files["photo"]), Face(photo_files["ref"], photo_files["ref_mask"]), ["nose"], steps=2)
    [full] = r.photos
    outside = _region(r.sources[0], [L.index("nose")]) == 0
    assert np.array_equal(np.asarray(full)[outside], astronaut[outside])


def test_cli_swap_hair_of_a_photo_and_parse(run_cli, tiny_model, photo_files, rigged_bisenet, tmp_path, astronaut,
                                            monkeypatch):
    m = ["--model", tiny_model, *FAST]
    out = tmp_path / "out.png"
    r = run_cli("edit", "swap", "--target", photo_files["photo"], "--target-mask", photo_files["mask"],
                "--reference", photo_files["ref"], "--reference-mask", photo_files["ref_mask"], "--parts", "hair",
                *m, "--out", out)
    assert r.code == 0, r.err
    res = np.asarray(Image.open(out))
    assert res.shape == astronaut.shape and Image.open(tmp_path / "out_crop.png").size == (32, 32)
    assert (tmp_path / "out_grid.png").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhotoWarning)
        photo = prepare_photo(photo_files["photo"], photo_files["mask"], size=32)
    outside = _region(photo, [HAIR]) == 0
    assert np.array_equal(res[outside], astronaut[outside]) and (res != astronaut).any()
    # --no-paste-back: the crop alone
    r = run_cli("edit", "reconstruct", "--image", photo_files["photo"], "--mask", photo_files["mask"], *m,
                "--no-paste-back", "--out", tmp_path / "crop.png")
    assert r.code == 0 and Image.open(tmp_path / "crop.png").size == (32, 32)
    assert not (tmp_path / "crop_crop.png").exists()
    # no mask and no parser: one line naming the flag and the parser file
    r = run_cli("edit", "swap", "--target", photo_files["photo"], "--reference", photo_files["ref"],
                "--reference-mask", photo_files["ref_mask"], *m, "--out", tmp_path / "o.png")
    assert r.code != 0 and r.err.strip().count("\n") == 0 and "--target-mask" in r.err and "79999_iter.pth" in r.err
    # a parser that sees no face (every pixel 'nose'): one line naming the photo, the option and the parser file
    r = run_cli("edit", "swap", "--target", photo_files["photo"], "--reference", photo_files["ref"], "--parts", "nose",
                "--parser", rigged_bisenet, *m, "--out", tmp_path / "parsed.jpg")
    assert r.code == 1 and r.err.strip().count("\n") == 0 and "not a plausible face" in r.err, r.err
    assert "--target-mask" in r.err and "79999_iter.pth" in r.err and not (tmp_path / "parsed.jpg").exists()
    r = run_cli("parse", photo_files["photo"], "--parser", rigged_bisenet, "--model", tiny_model, "--out", tmp_path / "m.png")
    assert r.code == 1 and "not a plausible face" in r.err and "--mask" not in r.err and not (tmp_path / "m.png").exists()
    r = run_cli("parse", photo_files["photo"], "--parser", tmp_path / "79999_iter.pth", "--model", tiny_model,
                "--out", tmp_path / "m.png")
    assert r.code != 0 and "no such file" in r.err and "scadm fetch parser" in r.err
    # with a parser that sees the face (--parser): masks parsed, a JPEG photo written at full resolution
    _parse_like_a_face(monkeypatch)
    r = run_cli("edit", "swap", "--target", photo_files["photo"], "--reference", photo_files["ref"], "--parts", "nose",
                "--parser", rigged_bisenet, *m, "--out", tmp_path / "parsed.jpg")
    assert r.code == 0, r.err
    assert Image.open(tmp_path / "parsed.jpg").size == (512, 512) and "parsed by" in r.out
    # scadm parse: the id mask at the photo's size and a colour preview, accepted back as --mask
    r = run_cli("parse", photo_files["photo"], "--parser", rigged_bisenet, "--model", tiny_model,
                "--out", tmp_path / "m.png")
    assert r.code == 0, r.err
    ids = np.asarray(Image.open(tmp_path / "m.png"))
    assert ids.shape == (512, 512) and Image.open(tmp_path / "m_color.png").mode == "RGB"
    r = run_cli("edit", "reconstruct", "--image", photo_files["photo"], "--mask", tmp_path / "m_color.png", *m,
                "--out", tmp_path / "again.png")
    assert r.code == 0, r.err
    r = run_cli("parse", photo_files["photo"], "--model", tiny_model, "--out", tmp_path / "x.png")
    assert r.code != 0 and "79999_iter.pth" in r.err


def test_cli_generate_and_edit_mask_into_a_photo(run_cli, tiny_model, photo_files, tmp_path, astronaut):
    m = ["--model", tiny_model, *FAST]
    r = run_cli("edit", "generate", "--image", photo_files["photo"], "--mask", photo_files["mask"], "--n", "2", *m,
                "--out", tmp_path / "gen.png")
    assert r.code == 0, r.err
    for name in ("gen.png", "gen_1.png"):
        assert np.asarray(Image.open(tmp_path / name)).shape == astronaut.shape
    edited = draw_astronaut_mask()
    edited[edited == L.index("mouth")] = L.index("skin")  # close the mouth
    Image.fromarray(edited).save(tmp_path / "closed.png")
    r = run_cli("edit", "edit-mask", "--image", photo_files["photo"], "--mask", photo_files["mask"],
                "--new-mask", tmp_path / "closed.png", *m, "--out", tmp_path / "closed_out.png")
    assert r.code == 0, r.err
    res = np.asarray(Image.open(tmp_path / "closed_out.png"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhotoWarning)
        box = prepare_photo(photo_files["photo"], photo_files["mask"], size=32).box
    keep = np.ones(astronaut.shape[:2], bool)
    keep[box.y0:box.y0 + box.side, box.x0:box.x0 + box.side] = False
    assert np.array_equal(res[keep], astronaut[keep])
    r = run_cli("edit", "generate", *m, "--out", tmp_path / "none.png")
    assert r.code != 0 and "--mask" in r.err


@pytest.mark.parametrize("scale, size, at", [(2, (256, 192), (64, 32)), (2, (256, 192), (10, 60)),
                                             (3, (320, 256), (60, 40)), (1, (200, 150), (30, 60)),
                                             (4, (300, 300), (20, 40))])
def test_framing_converges_on_the_face_at_any_scale_the_parser_sees(scale, size, at):
    """A synthetic face scaled and placed in a canvas of its background colour: coarse to fine,
    the parsed square closes in on the face's own square (within 5 % of its side)."""
    from scadm.data.synthetic import render_face, synthetic_split_ids
    from scadm.labels import CELEBAMASK_HQ
    from scadm.photos import Framing, frame_face, load_face_parser, prepare_photo
    from scadm.pipeline import DEFAULT_MODEL

    parser = load_face_parser(DEFAULT_MODEL / "face_parser", CELEBAMASK_HQ, 64, "cpu", "bundled")
    face = render_face(synthetic_split_ids("test", 1)[0], size=64)
    (w, h), (x, y), side = size, at, 64 * scale
    canvas = np.zeros((h, w, 3), np.uint8) + face.image[0, 0]
    canvas[y:y + side, x:x + side] = np.asarray(Image.fromarray(face.image).resize((side, side), Image.Resampling.LANCZOS))
    labels = np.zeros((h, w), np.uint8)
    labels[y:y + side, x:x + side] = np.asarray(Image.fromarray(face.label).resize((side, side), Image.Resampling.NEAREST))
    truth = frame_face(labels, CELEBAMASK_HQ, Framing())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a square leaving the canvas, upsampling: not what is tested
        box = prepare_photo(canvas, None, size=64, parser=parser).box
    assert max(abs(box.side - truth.side), abs(box.x0 - truth.x0), abs(box.y0 - truth.y0)) <= 0.05 * truth.side
