"""Editing and generation commands: `scadm edit ...`, `scadm sample`."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from .common import UserError, console, err_console
from .options import DeviceOpt, ModelOpt, OutOpt, StepsOpt, shared_options

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


def _need(path: Optional[Path], flag: str, what: str) -> Path:
    if path is None:
        raise UserError(f"{flag} is required: {what}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{flag} {path}: file does not exist")
    return Path(path)


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


# --------------------------------------------------------------------------- commands
@edit_app.command("reconstruct")
@shared_options()
def reconstruct(
    image: Path = typer.Option(..., "--image", help="Face image."),
    mask: Path = typer.Option(..., "--mask", help="Its mask (id-map PNG or colour PNG in the label palette)."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Reconstruct a face from its own style and mask."""
    _need(image, "--image", "the face to reconstruct")
    _need(mask, "--mask", "the face's semantic mask")
    _check_out(out, [image, mask])
    pipe = _pipeline(model, device)
    r = pipe.reconstruct(image, mask, attributes=attributes, sampling=sampling)
    write_result(r, out, [image, mask], {"image": [_input_image(pipe, image)], "mask": [_mask_image(pipe, mask)]})


@edit_app.command("swap")
@shared_options()
def swap(
    target: Path = typer.Option(..., "--target", help="Target face image (its mask shapes the result)."),
    target_mask: Path = typer.Option(None, "--target-mask", help="Target mask."),
    reference: Path = typer.Option(..., "--reference", help="Reference face image (its style is used)."),
    reference_mask: Path = typer.Option(None, "--reference-mask", help="Reference mask (styles are pooled with it)."),
    parts: Optional[str] = typer.Option(None, "--parts", help="Comma-separated parts to swap (e.g. l_eye,hair); all when omitted."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Total or partial style swap: the reference's style, the target's shape."""
    ins = [_need(target, "--target", "the target face"), _need(target_mask, "--target-mask", "the target's mask"),
           _need(reference, "--reference", "the reference face"),
           _need(reference_mask, "--reference-mask", "a reference needs its mask to pool its styles")]
    _check_out(out, ins)
    pipe = _pipeline(model, device)
    part_ids = pipe.parts(parts) if parts else None
    r = pipe.swap((target, target_mask), (reference, reference_mask), part_ids, attributes=attributes,
                  sampling=sampling)
    write_result(r, out, ins, {"target": [_input_image(pipe, target)], "reference": [_input_image(pipe, reference)]})


@edit_app.command("interpolate")
@shared_options()
def interpolate(
    target: Path = typer.Option(..., "--target"), target_mask: Path = typer.Option(None, "--target-mask"),
    reference: Path = typer.Option(..., "--reference"), reference_mask: Path = typer.Option(None, "--reference-mask"),
    parts: Optional[str] = typer.Option(None, "--parts", help="Parts to interpolate; all when omitted."),
    alphas: str = typer.Option("0,0.25,0.5,0.75,1", "--alphas", help="Comma-separated alphas (0 = target, 1 = reference)."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Interpolate part styles from the target (alpha 0) to the reference (alpha 1), paper Fig. 6."""
    ins = [_need(target, "--target", "the target face"), _need(target_mask, "--target-mask", "the target's mask"),
           _need(reference, "--reference", "the reference face"),
           _need(reference_mask, "--reference-mask", "a reference needs its mask to pool its styles")]
    try:
        alpha_list = [float(a) for a in alphas.split(",") if a.strip()]
    except ValueError:
        raise UserError(f"--alphas {alphas!r}: give comma-separated numbers, e.g. 0,0.5,1") from None
    _check_out(out, ins)
    pipe = _pipeline(model, device)
    r = pipe.interpolate((target, target_mask), (reference, reference_mask), pipe.parts(parts) if parts else None,
                         alphas=alpha_list, attributes=attributes, sampling=sampling)
    write_result(r, out, ins, captions=[f"alpha {a:g}" for a in alpha_list])


@edit_app.command("generate")
@shared_options()
def generate(
    mask: Path = typer.Option(..., "--mask", help="The mask to generate faces for."),
    n: int = typer.Option(4, "--n", help="Number of samples."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Noise-based generation: random styles for a mask (no reference)."""
    _need(mask, "--mask", "the mask to generate for")
    if n < 1:
        raise UserError(f"--n {n}: give at least 1")
    _check_out(out, [mask])
    pipe = _pipeline(model, device)
    r = pipe.generate(mask, n=n, attributes=attributes, sampling=sampling)
    write_result(r, out, [mask], {"mask": _tile(_mask_image(pipe, mask), 1)})


@edit_app.command("mix")
@shared_options()
def mix(
    mask: Path = typer.Option(..., "--mask", help="The mask to generate with."),
    reference: Path = typer.Option(..., "--reference"), reference_mask: Path = typer.Option(None, "--reference-mask"),
    parts: str = typer.Option(..., "--parts", help="Parts that take the reference's style; the rest is random."),
    n: int = typer.Option(1, "--n", help="Number of samples."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Mixed generation: reference style for some parts, noise for the rest (paper Fig. 1b)."""
    ins = [_need(mask, "--mask", "the mask to generate with"), _need(reference, "--reference", "the reference face"),
           _need(reference_mask, "--reference-mask", "a reference needs its mask to pool its styles")]
    _check_out(out, ins)
    pipe = _pipeline(model, device)
    r = pipe.mix(mask, (reference, reference_mask), pipe.parts(parts), n=n, attributes=attributes,
                 sampling=sampling)
    write_result(r, out, ins, {"reference": [_input_image(pipe, reference)]})


@edit_app.command("edit-mask")
@shared_options()
def edit_mask(
    image: Path = typer.Option(..., "--image"), mask: Path = typer.Option(..., "--mask"),
    new_mask: Path = typer.Option(..., "--new-mask", help="The edited mask (same label set)."),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Keep a face's styles, change its shape with an edited mask."""
    ins = [_need(image, "--image", "the face"), _need(mask, "--mask", "its mask"),
           _need(new_mask, "--new-mask", "the edited mask")]
    _check_out(out, ins)
    pipe = _pipeline(model, device)
    r = pipe.edit_mask(image, mask, new_mask, attributes=attributes, sampling=sampling)
    write_result(r, out, ins, {"image": [_input_image(pipe, image)], "new mask": [_mask_image(pipe, new_mask)]})


@edit_app.command("swap-mask-parts")
@shared_options()
def swap_mask_parts(
    mask: Path = typer.Option(..., "--mask", help="Mask A."),
    donor: Path = typer.Option(..., "--donor", help="Mask B, whose parts are pasted over A's."),
    parts: str = typer.Option(..., "--parts", help="Parts to take from the donor, e.g. hair,l_eye."),
    image: Optional[Path] = typer.Option(None, "--image", help="A's face: keep its styles (SCA-DM models)."),
    n: int = typer.Option(1, "--n"),
    out: Path = OutOpt,
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions, attributes: dict | None,
) -> None:
    """Mask component swapping (multi-conditioning paper Sec. 5): generate from A with B's parts."""
    from PIL import Image

    ins = [_need(mask, "--mask", "mask A"), _need(donor, "--donor", "the donor mask")]
    if image is not None:
        ins.append(_need(image, "--image", "A's face"))
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
def sample_cmd(
    data: Path = typer.Option(..., "--data", help="Dataset folder in the canonical layout."),
    mode: str = typer.Option("reconstruction", "--mode", help="reconstruction, swap or noise."),
    out: Path = typer.Option(..., "--out", help="Output folder (one PNG per id; existing ones are skipped)."),
    split: str = typer.Option("test", "--split"),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many ids."),
    batch_size: int = typer.Option(8, "--batch-size"),
    *, model: Optional[Path], device: Optional[str], sampling: SamplingOptions,
) -> None:
    """Bulk generation over a dataset split: resumable, shardable with `accelerate launch -m scadm sample`."""
    from ..sampling_jobs import run_sampling_job

    if mode not in ("reconstruction", "swap", "noise"):
        raise UserError(f"--mode {mode!r}: use reconstruction, swap or noise")
    run_sampling_job(data, out, mode=mode, split=split, limit=limit, batch_size=batch_size, model=model,
                     device=device, sampling=sampling, printer=console.print)


def demo_cmd(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="Report folder (index.html, PNGs, metrics.json)."),
    model: Optional[Path] = ModelOpt,
    steps: Optional[int] = StepsOpt,
    metric_faces: int = typer.Option(12, "--metric-faces", help="Faces for the quick metrics."),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Run every application on held-out synthetic faces and write an HTML report (the main job)."""
    from ..demo import run_demo

    run_demo(out, model=model, steps=steps, metric_faces=metric_faces, device=device, printer=console.print)


def register(app: typer.Typer) -> None:
    app.add_typer(edit_app, name="edit")
    app.command("sample")(shared_options(attributes=False)(sample_cmd))
    app.command("demo")(demo_cmd)


def _show_warnings() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False)

    warnings.showwarning = show


_show_warnings()
