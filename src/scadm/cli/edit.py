"""Editing and generation commands: `scadm edit ...`, `scadm sample`."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np
import typer

from .. import checks
from .common import UserError, console
from .options import (Choice, DeviceOpt, InDir, InFile, Integer, ModelOpt, Number, OutDir, ParserOpt, StepsOpt,
                      checked, shared_options)

if TYPE_CHECKING:
    from ..config import SamplingOptions

edit_app = typer.Typer(help="Edit or generate faces with a trained model (SCA-DM applications).", no_args_is_help=True)


def _pipeline(model: Optional[Path], device: Optional[str], photo: "PhotoArgs | None" = None):
    from ..pipeline import SCADMPipeline
    from ..photos import Framing

    with console.status("loading model"):
        if photo is None:
            return SCADMPipeline.from_pretrained(model, device=device)
        return SCADMPipeline.from_pretrained(model, device=device, parser=photo.parser,
                                             framing=Framing(photo.frame_scale))


def _check_out(out: Path, inputs: list[Optional[Path]]) -> None:
    """Refuse an output path that is one of the inputs (inputs are never overwritten)."""
    for p in inputs:
        if p is not None and Path(p).exists() and Path(out).resolve() == Path(p).resolve():
            raise UserError(f"--out {out} is also an input; choose another output path (inputs are never overwritten)")


def _out_names(out: Path, n: int) -> tuple[Path, list[Path], Path]:
    """(folder, the n result paths, the grid path) for --out FILE (FILE, FILE_1 ...) or --out FOLDER."""
    out = Path(out)
    if out.suffix:
        folder, stem, ext = out.parent, out.stem, out.suffix
        names = [out] + [folder / f"{stem}_{i}{ext}" for i in range(1, n)]
    else:
        folder, stem = out, "result"
        names = [folder / f"result_{i}.png" for i in range(n)]
    return folder, names, folder / f"{stem}_grid.png"


def write_result(result, out: Path, inputs: list[Optional[Path]], rows: dict | None = None,
                 captions: list[str] | None = None, paste_back: bool = True) -> list[Path]:
    """Write the results, a side-by-side grid (inputs, masks, results), and return the written paths.

    For photos (``result.photos``) with `paste_back`, each result is the edit pasted into the
    full-resolution photo and its crop is written beside it as ``*_crop.png``; otherwise the
    crops are the results.
    """
    from ..grids import image_grid
    from ..photos import save_photo

    photos = result.photos if paste_back else []
    folder, names, grid_path = _out_names(out, len(result.images))
    crops = [p.with_name(p.stem + "_crop.png") for p in names] if photos else names
    for p in [*names, *crops, grid_path]:
        _check_out(p, inputs)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, im in enumerate(result.images):
        if photos:
            src = result.sources[i]
            written.append(save_photo(np.asarray(photos[i]), names[i], src.icc_profile))
        written.append(save_photo(np.asarray(im.convert("RGB")), crops[i]))
    grid_rows = dict(rows or {})
    grid_rows["result"] = result.images
    image_grid(grid_rows, grid_path, column_titles=captions)
    what = "photo(s) pasted back" if photos else "image(s)"
    console.print(f"wrote {len(names)} {what}: {names[0]}{' ...' if len(names) > 1 else ''}"
                  + (f"; crops: {crops[0]}{' ...' if len(crops) > 1 else ''}" if photos else "") + f"; grid: {grid_path}")
    return [*written, grid_path]


def _tile(img, n: int) -> list:
    return [img] * n


def _mask_image(pipe, mask_path):
    """The colour image of a generation mask as the model sees it (framed when it is a photo's)."""
    from PIL import Image

    ids, _ = pipe.inputs.generation_mask(mask_path)
    return Image.fromarray(pipe.label_set.colorize(ids[0].cpu().numpy()))


def _colour(pipe, ids):
    from PIL import Image

    return Image.fromarray(pipe.label_set.colorize(np.asarray(ids)).astype(np.uint8))


class _Face:
    """A face input of a command: what the pipeline takes, and its crop and mask as the model sees them."""

    def __init__(self, pipe, image: Path, mask: Optional[Path], image_flag: str, mask_flag: str) -> None:
        from PIL import Image

        from ..pipeline import to_pil

        if mask is None and pipe.photo_parser is None:
            from ..photos import no_parser_error

            raise UserError(str(no_parser_error(f"{image_flag} {image}", mask_flag, pipe.model_folder)))
        if pipe.inputs.is_photo(image, mask):
            self.face = pipe.inputs.photo(image, mask, mask_option=mask_flag)
            self.shown = Image.fromarray(self.face.crop)
            self.mask_shown = _colour(pipe, self.face.crop_mask)
            if self.face.mask_source != "given":
                console.print(f"{image_flag} {image}: mask {self.face.mask_source}; face square {self.face.box}")
        else:
            self.face = (image, mask)
            self.shown = to_pil(pipe.inputs.load_image(image))[0]
            self.mask_shown = _colour(pipe, pipe.inputs.load_mask(mask)[0].cpu().numpy())


# --------------------------------------------------------------------------- options
def _face(flag: str, help: str, required: bool = True) -> object:  # noqa: A002
    return InFile(... if required else None, flag, help=f"{help}", what="image file")


def _mask(flag: str, help: str, required: bool = False) -> object:  # noqa: A002
    extra = "" if required else "; parsed from the photo when omitted (see --parser)"
    return InFile(... if required else None, flag,
                  help=f"{help} (id-map PNG or colour PNG in the label palette, the photo's size{extra})",
                  what="mask file")


_N = Integer(1, "--n", help="Number of samples.", lo=1, hi=10_000)


def _out_image_or_folder(value: Path, name: str) -> Path:
    from ..photos import PHOTO_EXTENSIONS

    suffix = Path(value).suffix.lower()
    if not suffix:
        return checks.output_dir(value, name)
    if suffix not in PHOTO_EXTENSIONS:
        raise ValueError(f"{name} {value}: give an image file ({', '.join(PHOTO_EXTENSIONS)}) or a folder")
    return checks.output_file(value, name)


OutOpt = typer.Option(..., "--out", "-o", callback=checked(_out_image_or_folder),
                      help="Output image (result; more images get _1, _2 ...; photos also *_crop.png) or a folder. "
                           "PNG keeps the photo outside the edit bit for bit; JPEG re-encodes it (quality 95).")


class PhotoArgs(NamedTuple):
    parser: Optional[Path]
    paste_back: bool
    frame_scale: float


_PHOTO_OPTIONS = (
    ("parser", Optional[Path], ParserOpt(
        "Face parser for photos given without a mask: face-parsing.PyTorch's BiSeNet 79999_iter.pth or a `scadm "
        "train-parser` folder (default: $SCADM_PARSER, else the model folder's parser/ unless it knows only "
        "synthetic faces).")),
    ("paste_back", bool, typer.Option(
        True, "--paste-back/--no-paste-back", help="Write photos with the edit pasted back at full resolution (only "
        "the edited region changes) and the crop beside them as *_crop; or only the crop.")),
    ("frame_scale", float, Number(
        1.0, "--frame-scale", help="Size of the face's square relative to CelebA-HQ's framing (> 1 shows more "
        "around the face, e.g. long hair).", lo=0.25, hi=4)),
)


def photo_options(fn):
    """Give a command the photo options (--parser, --paste-back, --frame-scale) as one ``photo`` keyword."""
    own = [p for p in inspect.signature(fn).parameters.values() if p.name != "photo"]
    keyword = [p for p in own if p.kind == inspect.Parameter.KEYWORD_ONLY]
    positional = [p for p in own if p.kind != inspect.Parameter.KEYWORD_ONLY]
    added = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=opt, annotation=tp)
             for name, tp, opt in _PHOTO_OPTIONS]

    @functools.wraps(fn)
    def command(**kwargs):
        photo = PhotoArgs(*(kwargs.pop(name) for name, _, _ in _PHOTO_OPTIONS))
        return fn(**kwargs, photo=photo)

    command.__signature__ = inspect.Signature(positional + added + keyword)
    return command


# --------------------------------------------------------------------------- commands
@edit_app.command("reconstruct")
@shared_options(inversion=True)
@photo_options
def reconstruct(
    image: Path = _face("--image", "Face image or photo."),
    mask: Optional[Path] = _mask("--mask", "Its mask"),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
    photo: PhotoArgs,
) -> None:
    """Reconstruct a face from its own style and mask (with the default exact inversion and blending this is the
    autoencoder's encode-decode of the face; --inversion none samples it from noise, as the paper does)."""
    _check_out(out, [image, mask])
    pipe = _pipeline(model, device, photo)
    face = _Face(pipe, image, mask, "--image", "--mask")
    r = pipe.reconstruct(*_pair(face.face), attributes=attributes, sampling=sampling)
    write_result(r, out, [image, mask], {"image": [face.shown], "mask": [face.mask_shown]},
                 paste_back=photo.paste_back)


def _pair(face):
    """(image, mask) for the pipeline's image-and-mask operations: a Photo stands alone."""
    return (face, None) if not isinstance(face, tuple) else face


@edit_app.command("swap")
@shared_options(inversion=True)
@photo_options
def swap(
    target: Path = _face("--target", "Target face image or photo (its mask shapes the result)."),
    target_mask: Optional[Path] = _mask("--target-mask", "Target mask"),
    reference: Path = _face("--reference", "Reference face image or photo (its style is used)."),
    reference_mask: Optional[Path] = _mask("--reference-mask", "Reference mask, with which its styles are pooled"),
    parts: Optional[str] = typer.Option(None, "--parts", help="Comma-separated parts to swap (e.g. l_eye,hair); all when omitted."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
    photo: PhotoArgs,
) -> None:
    """Total or partial style swap: the reference's style, the target's shape (a photo changes only there)."""
    ins = [target, target_mask, reference, reference_mask]
    _check_out(out, ins)
    pipe = _pipeline(model, device, photo)
    part_ids = pipe.inputs.parts(parts) if parts else None
    t = _Face(pipe, target, target_mask, "--target", "--target-mask")
    ref = _Face(pipe, reference, reference_mask, "--reference", "--reference-mask")
    r = pipe.swap(t.face, ref.face, part_ids, attributes=attributes, sampling=sampling)
    write_result(r, out, ins, {"target": [t.shown], "reference": [ref.shown], "target mask": [t.mask_shown]},
                 paste_back=photo.paste_back)


@edit_app.command("interpolate")
@shared_options(inversion=True)
@photo_options
def interpolate(
    target: Path = _face("--target", "Target face image or photo (alpha 0)."),
    target_mask: Optional[Path] = _mask("--target-mask", "Target mask"),
    reference: Path = _face("--reference", "Reference face image or photo (alpha 1)."),
    reference_mask: Optional[Path] = _mask("--reference-mask", "Reference mask"),
    parts: Optional[str] = typer.Option(None, "--parts", help="Parts to interpolate; all when omitted."),
    alphas: str = typer.Option("0,0.25,0.5,0.75,1", "--alphas", help="Comma-separated alphas (0 = target, 1 = reference)."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
    photo: PhotoArgs,
) -> None:
    """Interpolate part styles from the target (alpha 0) to the reference (alpha 1), paper Fig. 6."""
    ins = [target, target_mask, reference, reference_mask]
    try:
        alpha_list = [checks.number(a, "--alphas", lo=-10, hi=10) for a in alphas.split(",") if a.strip()]
    except ValueError:
        raise UserError(f"--alphas {alphas!r}: give comma-separated finite numbers, e.g. 0,0.5,1") from None
    if not alpha_list:
        raise UserError(f"--alphas {alphas!r}: give at least one alpha, e.g. 0,0.5,1")
    _check_out(out, ins)
    pipe = _pipeline(model, device, photo)
    t = _Face(pipe, target, target_mask, "--target", "--target-mask")
    ref = _Face(pipe, reference, reference_mask, "--reference", "--reference-mask")
    r = pipe.interpolate(t.face, ref.face, pipe.inputs.parts(parts) if parts else None,
                         alphas=alpha_list, attributes=attributes, sampling=sampling)
    write_result(r, out, ins, captions=[f"alpha {a:g}" for a in alpha_list], paste_back=photo.paste_back)


def _mask_or_photo(pipe, image: Optional[Path], mask: Optional[Path], image_flag: str):
    """The generation mask of generate / mix: a photo (with its mask given or parsed) or a mask alone."""
    if image is None and mask is None:
        raise UserError(f"give --mask, or {image_flag} (a photo whose mask is parsed, and into which the result is pasted)")
    if image is not None:
        face = _Face(pipe, image, mask, image_flag, "--mask")
        from ..pipeline import Face

        return (face.face if not isinstance(face.face, tuple) else Face(*face.face)), face.mask_shown
    return mask, _mask_image(pipe, mask)


@edit_app.command("generate")
@shared_options()
@photo_options
def generate(
    mask: Optional[Path] = _mask("--mask", "The mask to generate faces for (or --image's)"),
    image: Optional[Path] = _face("--image", "A photo to generate a new face into: its mask (given or parsed) is used "
                                  "and each result is pasted back into it.", required=False),
    n: int = Integer(4, "--n", help="Number of samples.", lo=1, hi=10_000),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
    photo: PhotoArgs,
) -> None:
    """Noise-based generation: random styles for a mask (no reference)."""
    _check_out(out, [mask, image])
    pipe = _pipeline(model, device, photo)
    source, shown = _mask_or_photo(pipe, image, mask, "--image")
    r = pipe.generate(source, n=n, attributes=attributes, sampling=sampling)
    write_result(r, out, [mask, image], {"mask": _tile(shown, 1)}, paste_back=photo.paste_back)


@edit_app.command("mix")
@shared_options(inversion=True)
@photo_options
def mix(
    mask: Optional[Path] = _mask("--mask", "The mask to generate with (or --image's)"),
    image: Optional[Path] = _face("--image", "A photo whose --parts take the reference's style (the rest of the photo "
                                  "is kept); its mask is --mask or parsed.", required=False),
    reference: Path = _face("--reference", "Reference face image or photo (its style for --parts)."),
    reference_mask: Optional[Path] = _mask("--reference-mask", "Reference mask"),
    parts: str = typer.Option(..., "--parts", help="Parts that take the reference's style; the rest is random (from a mask) or the target's (from --image)."),
    n: int = _N,
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
    photo: PhotoArgs,
) -> None:
    """Mixed generation: reference style for some parts, noise for the rest (paper Fig. 1b); from a face
    (--image), the rest of the face is kept unless --inversion none."""
    ins = [mask, image, reference, reference_mask]
    _check_out(out, ins)
    pipe = _pipeline(model, device, photo)
    part_ids = pipe.inputs.parts(parts)
    source, _ = _mask_or_photo(pipe, image, mask, "--image")
    ref = _Face(pipe, reference, reference_mask, "--reference", "--reference-mask")
    r = pipe.mix(source, ref.face, part_ids, n=n, attributes=attributes, sampling=sampling)
    write_result(r, out, ins, {"reference": [ref.shown]}, paste_back=photo.paste_back)


@edit_app.command("edit-mask")
@shared_options(inversion=True)
@photo_options
def edit_mask(
    image: Path = _face("--image", "Face image or photo (its styles are kept)."),
    mask: Optional[Path] = _mask("--mask", "Its mask"),
    new_mask: Path = _mask("--new-mask", "The edited mask, same label set and size as the image", required=True),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
    photo: PhotoArgs,
) -> None:
    """Keep a face's styles, change its shape with an edited mask (`scadm parse` writes one to edit)."""
    ins = [image, mask, new_mask]
    _check_out(out, ins)
    pipe = _pipeline(model, device, photo)
    face = _Face(pipe, image, mask, "--image", "--mask")
    r = pipe.edit_mask(*_pair(face.face), new_mask, attributes=attributes, sampling=sampling)
    write_result(r, out, ins, {"image": [face.shown], "new mask": [_colour(pipe, r.masks[0])]},
                 paste_back=photo.paste_back)


@edit_app.command("swap-mask-parts")
@shared_options(inversion=True)
@photo_options
def swap_mask_parts(
    mask: Optional[Path] = _mask("--mask", "Mask A (or --image's)"),
    donor: Path = _mask("--donor", "Mask B, whose parts are pasted over A's", required=True),
    parts: str = typer.Option(..., "--parts", help="Parts to take from the donor, e.g. hair,l_eye."),
    image: Optional[Path] = _face("--image", "A's face or photo: keep its styles (SCA-DM models); its mask is "
                                  "--mask or parsed.", required=False),
    n: int = _N,
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
    photo: PhotoArgs,
) -> None:
    """Mask component swapping (multi-conditioning paper Sec. 5): generate from A with B's parts."""
    from PIL import Image

    ins = [mask, donor, image]
    _check_out(out, ins)
    pipe = _pipeline(model, device, photo)
    if image is None and mask is None:
        raise UserError("give --mask, or --image (a photo whose mask is parsed)")
    if image is not None:
        face = _Face(pipe, image, mask, "--image", "--mask")
        src, a_shown, src_mask = _pair(face.face)[0], face.mask_shown, _pair(face.face)[1]
    else:
        src, a_shown, src_mask = None, _mask_image(pipe, mask), mask
    r = pipe.swap_mask_parts(src_mask, donor, pipe.inputs.parts(parts), image=src, n=n, attributes=attributes,
                             sampling=sampling)
    mixed = Image.fromarray(pipe.label_set.colorize(r.info["mixed_mask"]))
    written = write_result(r, out, ins, {"mask A": [a_shown], "donor": [_mask_image(pipe, donor)],
                                          "mixed": [mixed]}, paste_back=photo.paste_back)
    mixed_path = written[0].parent / (Path(written[0]).stem + "_mixed_mask.png")
    _check_out(mixed_path, ins)
    Image.fromarray(r.info["mixed_mask"]).save(mixed_path)


# --------------------------------------------------------------------------- bulk sampling
SAMPLE_MODES = ("reconstruction", "swap", "partial-swap", "noise")


def sample_cmd(
    data: Path = InDir(..., "--data", help="Dataset folder in the canonical layout.", what="dataset folder"),
    mode: str = Choice("reconstruction", "--mode", help="reconstruction, swap, partial-swap or noise.",
                       options=SAMPLE_MODES),
    out: Path = OutDir(..., "--out", help="Output folder (one PNG per id; existing ones are skipped)."),
    split: str = typer.Option("test", "--split", help="The split to generate for (its splits/<split>.txt)."),
    limit: Optional[int] = Integer(None, "--limit", help="At most this many ids.", lo=1),
    batch_size: int = Integer(8, "--batch-size", help="Images per sampling batch.", lo=1, hi=4096),
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions,
) -> None:
    """Bulk generation over a dataset split: resumable, shardable with `accelerate launch -m scadm sample`."""
    from ..sampling_jobs import run_sampling_job

    run_sampling_job(data, out, mode=mode, split=split, limit=limit, batch_size=batch_size, model=model,
                     device=device, sampling=sampling, printer=console.print)


def demo_cmd(
    out: Path = OutDir(Path("demo"), "--out", "-o", help="Report folder (index.html, PNGs, metrics.json)."),
    model: Optional[Path] = ModelOpt,
    steps: Optional[int] = StepsOpt,
    metric_faces: int = Integer(12, "--metric-faces", help="Faces for the quick metrics.", lo=2, hi=10_000),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Run every application on held-out synthetic faces and write an HTML report (the main job)."""
    from ..demo import run_demo

    run_demo(out, model=model, steps=steps, metric_faces=metric_faces, device=device, printer=console.print)


def register(app: typer.Typer) -> None:
    app.add_typer(edit_app, name="edit")
    app.command("sample")(shared_options(attributes=False, inversion=True)(sample_cmd))
    app.command("demo")(demo_cmd)
