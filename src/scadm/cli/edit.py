"""Editing and generation commands: `scadm edit ...`, `scadm sample`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from .. import checks
from .common import UserError, console
from .options import Choice, DeviceOpt, InDir, InFile, Integer, ModelOpt, OutDir, OutOpt, StepsOpt, shared_options

if TYPE_CHECKING:
    from ..config import SamplingOptions

edit_app = typer.Typer(help="Edit or generate faces with a trained model (SCA-DM applications).", no_args_is_help=True)


def _pipeline(model: Optional[Path], device: Optional[str]):
    from ..pipeline import SCADMPipeline

    with console.status("loading model"):
        return SCADMPipeline.from_pretrained(model, device=device)


def _check_out(out: Path, inputs: list[Optional[Path]]) -> None:
    """Refuse an output path that is one of the inputs (inputs are never overwritten)."""
    for p in inputs:
        if p is not None and Path(p).exists() and Path(out).resolve() == Path(p).resolve():
            raise UserError(f"--out {out} is also an input; choose another output path (inputs are never overwritten)")


def write_result(result, out: Path, inputs: list[Optional[Path]], rows: dict | None = None,
                 captions: list[str] | None = None) -> list[Path]:
    """Write result PNGs and a side-by-side grid (inputs, masks, results); return the written paths."""
    from ..grids import image_grid

    out = Path(out)
    if out.suffix.lower() == ".png":
        folder, stem = out.parent, out.stem
        names = [out] + [folder / f"{stem}_{i}.png" for i in range(1, len(result.images))]
    else:
        folder, stem = out, "result"
        names = [folder / f"result_{i}.png" for i in range(len(result.images))]
    grid_path = folder / f"{stem}_grid.png"
    for p in [*names, grid_path]:
        _check_out(p, inputs)
    folder.mkdir(parents=True, exist_ok=True)
    for im, p in zip(result.images, names):
        im.save(p)
    grid_rows = dict(rows or {})
    grid_rows["result"] = result.images
    image_grid(grid_rows, grid_path, column_titles=captions)
    console.print(f"wrote {len(names)} image(s): {names[0]}{' ...' if len(names) > 1 else ''}; grid: {grid_path}")
    return [*names, grid_path]


def _tile(img, n: int) -> list:
    return [img] * n


def _mask_image(pipe, mask_path: Path):
    from PIL import Image

    ids = pipe.load_mask(mask_path)[0].cpu().numpy()
    return Image.fromarray(pipe.label_set.colorize(ids))


def _input_image(pipe, path: Path):
    from ..pipeline import to_pil

    return to_pil(pipe.load_image(path))[0]


# --------------------------------------------------------------------------- options
def _face(flag: str, help: str) -> object:  # noqa: A002
    return InFile(..., flag, help=f"{help}", what="image file")


def _mask(flag: str, help: str) -> object:  # noqa: A002
    return InFile(..., flag, help=f"{help} (id-map PNG or colour PNG in the label palette)",
                  what="mask file")


_N = Integer(1, "--n", help="Number of samples.", lo=1, hi=10_000)


# --------------------------------------------------------------------------- commands
@edit_app.command("reconstruct")
@shared_options()
def reconstruct(
    image: Path = _face("--image", "Face image."),
    mask: Path = _mask("--mask", "Its mask"),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Reconstruct a face from its own style and mask."""
    _check_out(out, [image, mask])
    pipe = _pipeline(model, device)
    r = pipe.reconstruct(image, mask, attributes=attributes, sampling=sampling)
    write_result(r, out, [image, mask], {"image": [_input_image(pipe, image)], "mask": [_mask_image(pipe, mask)]})


@edit_app.command("swap")
@shared_options()
def swap(
    target: Path = _face("--target", "Target face image (its mask shapes the result)."),
    target_mask: Path = _mask("--target-mask", "Target mask"),
    reference: Path = _face("--reference", "Reference face image (its style is used)."),
    reference_mask: Path = _mask("--reference-mask", "Reference mask, with which its styles are pooled"),
    parts: Optional[str] = typer.Option(None, "--parts", help="Comma-separated parts to swap (e.g. l_eye,hair); all when omitted."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Total or partial style swap: the reference's style, the target's shape."""
    ins = [target, target_mask, reference, reference_mask]
    _check_out(out, ins)
    pipe = _pipeline(model, device)
    part_ids = pipe.parts(parts) if parts else None
    r = pipe.swap((target, target_mask), (reference, reference_mask), part_ids, attributes=attributes,
                  sampling=sampling)
    write_result(r, out, ins, {"target": [_input_image(pipe, target)], "reference": [_input_image(pipe, reference)]})


@edit_app.command("interpolate")
@shared_options()
def interpolate(
    target: Path = _face("--target", "Target face image (alpha 0)."),
    target_mask: Path = _mask("--target-mask", "Target mask"),
    reference: Path = _face("--reference", "Reference face image (alpha 1)."),
    reference_mask: Path = _mask("--reference-mask", "Reference mask"),
    parts: Optional[str] = typer.Option(None, "--parts", help="Parts to interpolate; all when omitted."),
    alphas: str = typer.Option("0,0.25,0.5,0.75,1", "--alphas", help="Comma-separated alphas (0 = target, 1 = reference)."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
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
    pipe = _pipeline(model, device)
    r = pipe.interpolate((target, target_mask), (reference, reference_mask), pipe.parts(parts) if parts else None,
                         alphas=alpha_list, attributes=attributes, sampling=sampling)
    write_result(r, out, ins, captions=[f"alpha {a:g}" for a in alpha_list])


@edit_app.command("generate")
@shared_options()
def generate(
    mask: Path = _mask("--mask", "The mask to generate faces for"),
    n: int = Integer(4, "--n", help="Number of samples.", lo=1, hi=10_000),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Noise-based generation: random styles for a mask (no reference)."""
    _check_out(out, [mask])
    pipe = _pipeline(model, device)
    r = pipe.generate(mask, n=n, attributes=attributes, sampling=sampling)
    write_result(r, out, [mask], {"mask": _tile(_mask_image(pipe, mask), 1)})


@edit_app.command("mix")
@shared_options()
def mix(
    mask: Path = _mask("--mask", "The mask to generate with"),
    reference: Path = _face("--reference", "Reference face image (its style for --parts)."),
    reference_mask: Path = _mask("--reference-mask", "Reference mask"),
    parts: str = typer.Option(..., "--parts", help="Parts that take the reference's style; the rest is random."),
    n: int = _N,
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Mixed generation: reference style for some parts, noise for the rest (paper Fig. 1b)."""
    ins = [mask, reference, reference_mask]
    _check_out(out, ins)
    pipe = _pipeline(model, device)
    r = pipe.mix(mask, (reference, reference_mask), pipe.parts(parts), n=n, attributes=attributes,
                 sampling=sampling)
    write_result(r, out, ins, {"reference": [_input_image(pipe, reference)]})


@edit_app.command("edit-mask")
@shared_options()
def edit_mask(
    image: Path = _face("--image", "Face image (its styles are kept)."),
    mask: Path = _mask("--mask", "Its mask"),
    new_mask: Path = _mask("--new-mask", "The edited mask, same label set"),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Keep a face's styles, change its shape with an edited mask."""
    ins = [image, mask, new_mask]
    _check_out(out, ins)
    pipe = _pipeline(model, device)
    r = pipe.edit_mask(image, mask, new_mask, attributes=attributes, sampling=sampling)
    write_result(r, out, ins, {"image": [_input_image(pipe, image)], "new mask": [_mask_image(pipe, new_mask)]})


@edit_app.command("swap-mask-parts")
@shared_options()
def swap_mask_parts(
    mask: Path = _mask("--mask", "Mask A"),
    donor: Path = _mask("--donor", "Mask B, whose parts are pasted over A's"),
    parts: str = typer.Option(..., "--parts", help="Parts to take from the donor, e.g. hair,l_eye."),
    image: Optional[Path] = InFile(None, "--image", help="A's face: keep its styles (SCA-DM models).",
                                   what="image file"),
    n: int = _N,
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Mask component swapping (multi-conditioning paper Sec. 5): generate from A with B's parts."""
    from PIL import Image

    ins = [mask, donor] + ([image] if image is not None else [])
    _check_out(out, ins)
    pipe = _pipeline(model, device)
    r = pipe.swap_mask_parts(mask, donor, pipe.parts(parts), image=image, n=n, attributes=attributes,
                             sampling=sampling)
    mixed = Image.fromarray(pipe.label_set.colorize(r.info["mixed_mask"]))
    written = write_result(r, out, ins, {"mask A": [_mask_image(pipe, mask)], "donor": [_mask_image(pipe, donor)],
                                          "mixed": [mixed]})
    mixed_path = written[0].parent / (written[0].stem + "_mixed_mask.png")
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
    app.command("sample")(shared_options(attributes=False)(sample_cmd))
    app.command("demo")(demo_cmd)
