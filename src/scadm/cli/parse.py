"""`scadm parse`: a photo's mask, to look at, correct by hand and pass back with --mask."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import checks
from .common import UserError, console
from .options import DeviceOpt, ModelOpt, Number, ParserOpt, checked


def _png(value: Path, name: str) -> Path:
    if Path(value).suffix.lower() != ".png":
        raise ValueError(f"{name} {value}: give a .png path (the mask is a PNG of class ids)")
    return checks.output_file(value, name)


def parse_cmd(
    photo: Path = typer.Argument(..., help="The photo to parse (any size; EXIF orientation is applied).",
                                 callback=checked(checks.input_file, "image file")),
    out: Path = typer.Option(..., "--out", "-o", help="The id mask to write (PNG, the photo's size); a colour "
                             "preview is written beside it as *_color.png.", callback=checked(_png)),
    parser: Optional[Path] = ParserOpt("Face parser: face-parsing.PyTorch's BiSeNet 79999_iter.pth or a `scadm "
                                       "train-parser` folder (default: $SCADM_PARSER, else the model folder's parser/ "
                                       "unless it knows only synthetic faces)."),
    model: Optional[Path] = ModelOpt,
    frame_scale: float = Number(1.0, "--frame-scale", help="Size of the face's square relative to CelebA-HQ's "
                                "framing (as for `scadm edit`; only the printed square depends on it).", lo=0.25, hi=4),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Parse a photo into a mask of class ids (and a colour preview), and print where its face is.

    The mask is in the model's label set; correct it in any paint program (ids, or the colours
    `scadm labels` prints) and pass it to `scadm edit ... --mask`.
    """

    import numpy as np

    from ..data.layout import save_png
    from ..labels import LabelSet, get_label_set
    from ..photos import (Framing, check_parsed_face, load_face_parser, load_photo, no_parser_error, parse_photo,
                          resolve_parser)
    from ..models.ldm import read_model_config
    from ..pipeline import default_model_folder

    colour = out.with_name(out.stem + "_color.png")
    for p in (out, colour):
        if p.exists() and p.resolve() == photo.resolve():
            raise UserError(f"--out {p} is the photo; choose another output path (inputs are never overwritten)")
    folder = model if model is not None else default_model_folder()
    cfg = read_model_config(folder)
    labels = cfg.labels
    label_set = LabelSet.from_dict(labels) if isinstance(labels, dict) else get_label_set(labels)
    found = resolve_parser(parser, folder)
    if found is None:
        raise no_parser_error(str(photo), mask_option=None, model_folder=folder)
    spec, where = found
    size = cfg.image_size
    import torch

    with console.status("parsing"):
        fp = load_face_parser(spec, label_set, default_size=int(max(size)), device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
                              source=f"{spec} ({where})")
        image, _ = load_photo(photo, "PHOTO")
        mask, box = parse_photo(image, fp, label_set, Framing(frame_scale), source=str(photo), mask_option=None)
        check_parsed_face(mask, box, fp.source, str(photo), label_set, mask_option=None)
    save_png(mask, out)
    save_png(label_set.colorize(mask).astype(np.uint8), colour)
    h, w = mask.shape
    console.print(f"wrote {out} ({w}x{h} class ids, parsed by {fp.source}) and {colour}; face square: "
                  f"{box}")


def register(app: typer.Typer) -> None:
    app.command("parse")(parse_cmd)
