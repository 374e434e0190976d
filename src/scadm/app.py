"""The web editor (``scadm app``): every SCA-DM application in a browser, with a mask you can paint.

A gradio page on the same pipeline functions as the CLI: the page gathers a target face and its
mask (uploaded, one of the bundled example faces, or parsed from the photo when a parser is
available), a reference face, the application and the sampling settings, and calls one
:class:`Editor` method, which calls :class:`~scadm.pipeline.SCADMPipeline`. Nothing of the
editing logic lives in the page.

Safe by default: bound to 127.0.0.1 unless ``--host`` says otherwise, uploads limited in size,
one generation at a time (a queue), and every failure shown on the page as the same one-line
message the CLI gives, without stopping the server.

gradio is an optional extra: ``pip install 'scadm[app]'``.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import functools
import hashlib
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from . import checks
from .config import SamplingOptions
from .photos import Photo
from .diffusion.inversion import INVERTIBLE
from .diffusion.schedule import SAMPLERS, normalize_sampler

__all__ = ["APPLICATIONS", "Editor", "build_page", "serve"]

#: the page's display colours for CelebAMask-HQ's classes: 19 colours at least 68 apart in RGB (mostly Kelly's
#: colours of maximum contrast), where the official palette gives skin and r_ear nearly the same red and l_eye,
#: hair and l_lip blues. Only the page shows them: every file in or out (uploads, downloads, CLI) is official
DISPLAY_COLORS = {
    "background": (0, 0, 0), "skin": (249, 147, 121), "nose": (190, 0, 50), "eye_g": (132, 132, 130),
    "l_eye": (0, 103, 165), "r_eye": (161, 202, 241), "l_brow": (200, 0, 200), "r_brow": (43, 61, 38),
    "l_ear": (246, 166, 0), "r_ear": (141, 182, 0), "mouth": (96, 78, 151), "u_lip": (179, 68, 108),
    "l_lip": (255, 0, 128), "hair": (136, 45, 23), "hat": (255, 240, 0), "ear_r": (0, 200, 200),
    "neck_l": (242, 243, 244), "neck": (226, 88, 34), "cloth": (0, 136, 86),
}


def display_label_set(label_set: Any) -> Any:
    """The label set with the page's display colours (its own colours for classes the page has none for)."""
    if not all(n in DISPLAY_COLORS for n in label_set.names):
        return label_set
    return dataclasses.replace(label_set, colors=tuple(DISPLAY_COLORS[n] for n in label_set.names))


#: how a mask is given on the page (named where the CLI names --mask)
PAGE_MASK = "paint it, or upload a mask"

#: the applications of the page, in the order of the paper's figures
APPLICATIONS = ("reconstruct", "total swap", "partial swap", "interpolation", "noise-based generation", "mixed",
                "edit with the painted mask")
#: the applications that take the reference's style
NEEDS_REFERENCE = ("total swap", "partial swap", "interpolation", "mixed")
#: the applications that need parts ticked
NEEDS_PARTS = ("partial swap", "mixed")
#: the null condition menu's first entry: the model's own
MODEL_NULL = "the model's"
#: faces whose inversion the page keeps for their later edits
INVERSIONS_KEPT = 8


def _rgb(c: Sequence[int]) -> str:
    return f"rgb({int(c[0])}, {int(c[1])}, {int(c[2])})"


@dataclass
class Result:
    """What one run gives the page: captioned images, the files to download, a status line."""

    images: list[tuple[Image.Image, str]]
    result_file: str
    mask_file: str
    status: str


class Editor:
    """The page's state and its one entry point per action; usable (and tested) without a browser."""

    def __init__(self, model: str | Path | None = None, parser: str | Path | None = None,
                 device: str | None = None, examples: int = 6) -> None:
        from .pipeline import SCADMPipeline

        self.pipe = SCADMPipeline.from_pretrained(model, device=device, parser=parser)
        self.label_set = self.pipe.label_set  # files: the official colours
        self.shown = display_label_set(self.label_set)  # the page: colours far apart
        self.work = Path(tempfile.mkdtemp(prefix="scadm-app-"))  # examples and results; removed at exit
        atexit.register(shutil.rmtree, self.work, ignore_errors=True)
        self.examples = self._write_examples(examples)
        #: how each face's mask was obtained, for the status line ("the example's own", "parsed by ...", "uploaded")
        self.mask_source = {"target": "given", "reference": "given"}
        #: faces inverted for this page's edits, by face and sampling settings: a face is inverted once,
        #: and its later edits (other parts, other references) start from that inversion
        self.inversions: collections.OrderedDict[tuple, Any] = collections.OrderedDict()

    @property
    def knows(self) -> str:
        """What the model and the page's face parser were trained on, in words (shown under the title)."""
        domain = self.pipe.cfg.domain or "data it does not record"
        fp = self.pipe.photo_parser
        parser = (f"; photos without a mask are parsed by {fp.source}" if fp is not None else
                  "; no face parser for photos, so a photo needs its mask (`scadm fetch parser`, then start the page "
                  "with --parser parser)")
        return domain + parser

    # -------------------------------------------------------------- labels and examples
    @property
    def part_names(self) -> list[str]:
        return list(self.label_set.names[1:])  # background is not a part one swaps

    @property
    def palette(self) -> list[str]:
        return [_rgb(c) for c in self.shown.colors]

    def legend_html(self) -> str:
        cells = "".join(
            f'<span style="display:inline-block;margin:2px 8px 2px 0"><span style="display:inline-block;width:14px;'
            f'height:14px;vertical-align:middle;background:{col};border:1px solid #888"></span> {name}</span>'
            for name, col in zip(self.label_set.names, self.palette)
        )
        return f'<div class="scadm-legend">{cells}</div>'

    def _write_examples(self, n: int) -> dict[str, tuple[Path, Path]]:
        """Held-out synthetic faces at the model's size: name -> (image PNG, colour mask PNG)."""
        from .data.synthetic import render_face, synthetic_split_ids

        out = {}
        for k, i in enumerate(synthetic_split_ids("test", n)):
            face = render_face(i, size=self.pipe.image_size)
            img, mask = self.work / f"example_{k + 1}.png", self.work / f"example_{k + 1}_mask.png"
            Image.fromarray(face.image).save(img)
            Image.fromarray(self.label_set.colorize(face.label).astype(np.uint8)).save(mask)
            out[f"face {k + 1}"] = (img, mask)
        return out

    def example(self, name: str, which: str = "target") -> tuple[np.ndarray, np.ndarray]:
        """An example face and its colour mask, as the page shows them (for the `which` face)."""
        if name not in self.examples:
            raise ValueError(f"unknown example {name!r}; choose one of {', '.join(self.examples)}")
        self.mask_source[which] = f"the example's own ({name})"
        img, mask = self.examples[name]
        from .photos import read_mask

        with Image.open(img) as im:
            face = np.asarray(im.convert("RGB"))
        return face, self.shown.colorize(read_mask(mask, self.label_set, name)).astype(np.uint8)

    def parse(self, image: np.ndarray, which: str = "target") -> np.ndarray:
        """The colour mask of an uploaded photo (the `which` face), parsed by the pipeline's face parser."""
        if self.pipe.photo_parser is None:
            from .photos import no_parser_error

            raise no_parser_error(f"the uploaded {which} photo", PAGE_MASK, self.pipe.model_folder)
        photo = self.pipe.inputs.photo(np.asarray(image)[..., :3], None, mask_option=PAGE_MASK)
        self.mask_source[which] = photo.mask_source  # "parsed by ..."
        return self.shown.colorize(photo.mask).astype(np.uint8)

    def uploaded_mask(self, mask: np.ndarray | str | Path, which: str = "target") -> np.ndarray:
        """An uploaded mask (a file or an array: palette colours or an id map) as the page's colour mask,
        read and checked by the CLI's rule (a file is refused before decoding when it is too large)."""
        if isinstance(mask, (str, Path)):
            from .photos import read_mask

            name = f"the uploaded {which} mask {Path(mask).name}"
            ids = _as_upload(lambda: read_mask(mask, self.label_set, name), mask, name)
        else:
            ids = self.mask_ids(mask, f"{which} mask")
        self.mask_source[which] = "uploaded"
        return self.shown.colorize(ids).astype(np.uint8)

    def uploaded_photo(self, path: str | Path, which: str = "target") -> np.ndarray:
        """An uploaded photo file as (H, W, 3) uint8, read as the CLI reads photos: not an image, truncated, or
        a small file declaring a huge size is a one-line error before any decoding of pixels."""
        from .photos import load_photo

        name = f"the uploaded {which} photo {Path(path).name}"
        return _as_upload(lambda: load_photo(path, name)[0], path, name)

    @staticmethod
    def editor_value(mask_rgb: np.ndarray | None) -> dict | None:
        """The mask editor's value for a colour mask: it is the background that strokes paint over."""
        if mask_rgb is None:
            return None
        return {"background": mask_rgb, "layers": [], "composite": mask_rgb}

    # -------------------------------------------------------------- masks from the page
    def mask_ids(self, mask: np.ndarray | None, what: str) -> np.ndarray:
        """A colour mask (H, W, 3|4) in the page's display colours or the official palette (a script's file),
        or an id map (H, W), as class ids; unknown colours are an error."""
        if mask is None:
            raise ValueError(f"{what}: give a mask (upload one, pick an example face, or upload a photo with a face "
                             "parser running)")
        from .data.layout import ids_from_rgb
        from .photos import read_mask

        arr = np.asarray(mask)
        if arr.ndim == 3:  # the page's images are RGB: display colours, or an id map saved as RGB
            try:
                arr = ids_from_rgb(arr[..., :3], self.shown, what)
            except ValueError:
                official = arr[..., :3].reshape(-1, 3)
                if not np.isin(_rgb_codes(official), _rgb_codes(np.asarray(self.label_set.colors))).all():
                    raise
                arr = self.label_set.from_colors(arr[..., :3])  # a file sent by a script keeps the official colours
        return read_mask(arr, self.label_set, what)

    def painted_masks(self, value: dict | None) -> tuple[np.ndarray, np.ndarray]:
        """(the mask before painting, the painted mask) from the mask editor.

        The background must be a palette mask. A pixel is painted where the editor's composite
        differs from the background; it takes the class of the nearest palette colour when that
        colour is close (a brush stroke's body), and keeps its class where the stroke's
        anti-aliased edge blends two colours. The eraser removes strokes, restoring the background.
        """
        if not value or value.get("background") is None:
            raise ValueError("target mask: give a mask (upload one, pick an example face, or parse the photo)")
        background = np.asarray(value["background"])[..., :3]
        before = self.mask_ids(background, "target mask")
        after = before.copy()
        composite = value.get("composite")
        if composite is None:
            return before, after
        composite = np.asarray(composite)
        if composite.shape[:2] != before.shape:
            raise ValueError(f"painted mask is {composite.shape[1]}x{composite.shape[0]}, the mask "
                             f"{before.shape[1]}x{before.shape[0]}; reload the mask")
        if composite.ndim == 3 and composite.shape[-1] == 4:  # strokes over the background, alpha-blended
            a = composite[..., 3:4].astype(np.float32) / 255
            composite = (composite[..., :3] * a + background * (1 - a)).round()
        painted = (np.asarray(composite)[..., :3].astype(np.int32) != background.astype(np.int32)).any(-1)
        if painted.any():
            palette = np.asarray(self.shown.colors, dtype=np.int32)  # (C, 3)
            rgb = np.asarray(composite)[painted][:, :3].astype(np.int32)
            d2 = ((rgb[:, None, :] - palette[None]) ** 2).sum(-1)
            nearest, close = d2.argmin(1), d2.min(1) <= 24 ** 2
            idx = np.nonzero(painted)
            after[idx[0][close], idx[1][close]] = nearest[close].astype(np.uint8)
        return before, after

    # -------------------------------------------------------------- running an application
    def run(self, application: str, target: np.ndarray | None, target_mask: dict | None,
            reference: np.ndarray | None, reference_mask: np.ndarray | None, parts: Sequence[str] | None,
            alpha: float = 0.5, frames: int = 5, n: int = 1, sampler: str | None = None, steps: int | None = None,
            guidance_scale: float | None = None, null_condition: str | None = None, seed: int = 0,
            keep: bool = True, progress: bool = True) -> Result:
        """One application, end to end, on the pipeline (the CLI's functions).

        `keep` ("keep the rest of the face"): the target face is inverted exactly and the edit
        regenerates only its edited parts (inversion "exact" with latent blending, solved by the chosen
        sampler when it can invert, else the model's, else dpm++); noise-based generation ignores it.
        Warnings the CLI would print (framing, conversions) end the status line, each once.
        """
        r, said = with_warnings(self._run, application, target, target_mask, reference, reference_mask, parts, alpha,
                                frames, n, sampler, steps, guidance_scale, null_condition, seed, keep, progress)
        if said:
            r = dataclasses.replace(r, status=r.status + "; warning: " + "; warning: ".join(said))
        return r

    def _run(self, application: str, target: np.ndarray | None, target_mask: dict | None,
             reference: np.ndarray | None, reference_mask: np.ndarray | None, parts: Sequence[str] | None,
             alpha: float, frames: int, n: int, sampler: str | None, steps: int | None,
             guidance_scale: float | None, null_condition: str | None, seed: int, keep: bool,
             progress: bool) -> Result:
        if application not in APPLICATIONS:
            raise ValueError(f"unknown application {application!r}; choose one of {', '.join(APPLICATIONS)}")
        inversion = "none"
        if keep and target is not None and application != "noise-based generation":
            inversion = "exact"
            if sampler and normalize_sampler(sampler) not in INVERTIBLE:
                sampler = None  # a solver that cannot invert: the model's own, else dpm++ (the status names it)
        sampling = SamplingOptions(
            inversion=inversion, blend=inversion != "none",
            sampler=sampler or None,
            steps=None if steps in (None, 0) else checks.integer(steps, "steps", lo=1, hi=10_000),
            guidance_scale=None if guidance_scale is None else checks.number(guidance_scale, "guidance scale", 0, 1e4),
            null_condition=null_condition or None, seed=checks.integer(seed, "seed", lo=0), progress=progress,
        )
        parts = list(parts or [])
        needs_image = application not in ("noise-based generation", "mixed")
        missing = [what for what, absent in (
            ("a target face (upload a photo or pick an example face)", needs_image and target is None),
            ("a target mask (upload one, or pick an example face)",
             not target_mask or target_mask.get("background") is None),
            ("a reference face (upload one or pick an example)", application in NEEDS_REFERENCE and reference is None),
            ("at least one part (tick it)", application in NEEDS_PARTS and not parts),
        ) if absent]
        if missing:  # everything at once, before any work
            raise ValueError(f"{application} needs {'; '.join(missing)}")
        before, after = self.painted_masks(target_mask)
        target = None if target is None else np.asarray(target)[..., :3]
        if target is not None and target.shape[:2] != before.shape:
            raise ValueError(f"target face is {target.shape[1]}x{target.shape[0]} but its mask "
                             f"{before.shape[1]}x{before.shape[0]}; give the mask of this face")
        pipe = self.pipe
        if target is None:  # generation from the mask alone: nothing to paste into
            return self._from_mask_alone(application, after, reference, reference_mask, parts, n, sampling)
        # a face at the model's size (an example) is a crop; any other is a photo (scadm.photos): its face
        # framed and cut out, and each result pasted back into it, so only the edited region changes
        face = self.face(target, before)
        ref = None
        if application in NEEDS_REFERENCE:
            if reference is None:
                raise ValueError(f"{application}: give a reference face (upload one or pick an example)")
            ref_ids = self.mask_ids(reference_mask, "reference mask")
            reference = np.asarray(reference)[..., :3]
            if reference.shape[:2] != ref_ids.shape:
                raise ValueError(f"reference face is {reference.shape[1]}x{reference.shape[0]} but its mask "
                                 f"{ref_ids.shape[1]}x{ref_ids.shape[0]}; give the mask of this face")
            ref = self.face(reference, ref_ids)
        if application == "reconstruct":
            r = pipe.reconstruct(face, sampling=sampling)
            captions = ["reconstruction"]
        elif application == "total swap":
            r = pipe.swap(face, ref, None, sampling=sampling)
            captions = ["total swap"]
        elif application == "partial swap":
            r = pipe.swap(face, ref, parts, sampling=self._reusing(face, sampling))
            captions = [f"swap {', '.join(parts)}"]
        elif application == "interpolation":
            count = checks.integer(frames, "frames", lo=2, hi=16)
            alphas = [round(a, 3) for a in np.linspace(0.0, checks.number(alpha, "alpha", 0, 1), count)]
            r = pipe.interpolate(face, ref, parts or None, alphas=alphas,
                                 sampling=self._reusing(face, sampling) if parts else sampling)
            captions = [f"alpha {a:g}" for a in alphas]
        elif application == "noise-based generation":
            r = pipe.generate(self.face(target, after), n=checks.integer(n, "samples", lo=1, hi=16), sampling=sampling)
            captions = [f"seed {s}" for s in r.info["seeds"]]
        elif application == "mixed":
            repainted = self.face(target, after)
            r = pipe.mix(repainted, ref, parts, n=checks.integer(n, "samples", lo=1, hi=16),
                         sampling=self._reusing(repainted, sampling))
            captions = [f"mixed, seed {s}" for s in r.info["seeds"]]
        else:
            if np.array_equal(before, after):
                raise ValueError("edit with the painted mask: paint on the target mask first")
            r = pipe.edit_mask(face, None, after, sampling=self._reusing(face, sampling))
            captions = ["with the painted mask"]
        images = r.photos or r.images
        used = after if application in ("edit with the painted mask", "noise-based generation", "mixed") else before
        painted = ", painted over" if not np.array_equal(before, after) else ""
        masks = f"target mask: {self.mask_source['target']}{painted}"
        if ref is not None:
            masks += f"; reference mask: {self.mask_source['reference']}"
        where = "the face at the model's size" if face.source == "crop" else f"face square {face.box.side} px"
        return self._result(application, r, images, captions, used, sampling, f"{masks}; {where}")

    def face(self, image: np.ndarray, ids: np.ndarray) -> Photo:
        """A face of the page as a photo: at the model's size (the examples) it is a crop, edited as it is
        (nothing framed or resampled); any other is framed and its face cut out. Results are pasted back."""
        if image.shape[:2] == tuple(self.pipe.image_size) and image.shape[0] == image.shape[1]:
            return Photo.of_crop(image, ids, self.label_set)
        return self.pipe.inputs.photo(image, ids)

    def _reusing(self, face: Any, sampling: SamplingOptions) -> SamplingOptions:
        """`sampling` with the face's inversion for these settings: made on its first edit, reused after
        (a few faces are kept, the oldest dropped first)."""
        if sampling.inversion in (None, "none"):
            return sampling
        run = sampling.resolve(self.pipe.sampling_defaults)
        digest = hashlib.sha1(np.ascontiguousarray(face.crop).tobytes() +
                              np.ascontiguousarray(face.crop_mask).tobytes()).hexdigest()
        key = (digest, run.inversion, run.sampler, run.steps, run.guidance_scale, run.null_condition, run.clip_x0,
               repr(sorted(self.pipe.scheduler_kwargs(run.sampler).items())))
        if key not in self.inversions:
            self.inversions[key] = self.pipe.invert(face, sampling=dataclasses.replace(sampling, seed=0))
            while len(self.inversions) > INVERSIONS_KEPT:
                self.inversions.popitem(last=False)
        self.inversions.move_to_end(key)
        return dataclasses.replace(sampling, inversion=self.inversions[key])

    def _result(self, application: str, r: Any, images: list, captions: list[str], mask: np.ndarray,
                sampling: SamplingOptions, note: str) -> Result:
        """Write the first image and its mask for download; the status line."""
        out = Path(tempfile.mkdtemp(dir=self.work))
        result_file, mask_file = out / "result.png", out / "result_mask.png"
        images[0].save(result_file)
        Image.fromarray(self.label_set.colorize(mask).astype(np.uint8)).save(mask_file)
        s = r.info.get("guidance_scale")
        run = sampling.resolve(self.pipe.cfg.sampling)
        status = (f"{application}: {len(images)} image(s) of {images[0].width}x{images[0].height}, "
                  f"{run.sampler} {run.steps} steps, guidance s = {s:g}, "
                  f"seed {r.info['seeds'][0]}, {r.how}; {note}")
        return Result(list(zip(images, captions)), str(result_file), str(mask_file), status)

    def _from_mask_alone(self, application: str, mask: np.ndarray, reference: np.ndarray | None,
                         reference_mask: np.ndarray | None, parts: Sequence[str], n: int,
                         sampling: SamplingOptions) -> Result:
        """Noise-based or mixed generation for a mask without a target photo: the images are the crops."""
        pipe = self.pipe
        count = checks.integer(n, "samples", lo=1, hi=16)
        if application == "mixed":
            if reference is None:
                raise ValueError(f"{application}: give a reference face (upload one or pick an example)")
            ref = self.face(np.asarray(reference)[..., :3], self.mask_ids(reference_mask, "reference mask"))
            r = pipe.mix(mask, ref, parts, n=count, sampling=sampling)
        else:
            r = pipe.generate(mask, n=count, sampling=sampling)
        return self._result(application, r, r.images, [f"seed {s}" for s in r.info["seeds"]], mask, sampling,
                            "no target photo: the generated crops")


# ---------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------
def build_page(editor: Editor):
    """The gradio Blocks of the editor (not launched)."""
    import gradio as gr

    ls = editor.label_set
    size = editor.pipe.image_size
    brush_size = max(1, size[0] // 32)  # in mask pixels: a stroke as wide as a brow

    def guarded(fn):
        @functools.wraps(fn)  # the API names the callback's parameters (application, target, ...)
        def call(*args):
            try:
                return fn(*args)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is one line on the page (and in the log)
                message = checks.describe(exc)
                print(f"scadm app: error: {message}", file=sys.stderr, flush=True)
                raise gr.Error(message, print_exception=False) from None

        return call

    def pick(name):
        img, mask = editor.example(name)
        return img, editor.editor_value(mask)

    def pick_reference(name):
        return editor.example(name, "reference")

    def shown(fn):
        """Run an upload handler; its warnings (conversions, framing) become toasts on the page."""
        @functools.wraps(fn)
        def call(*args):
            out, said = with_warnings(fn, *args)
            for text in said:
                gr.Warning(text)
            return out

        return call

    def parsed(image, which):
        """The photo's parsed mask, or None with the reason shown (no parser, or no plausible face)."""
        try:
            return editor.parse(image, which)
        except ValueError as exc:
            gr.Warning(checks.one_line(str(exc)))
            return None

    def upload_target(path):
        image = editor.uploaded_photo(path, "target")
        mask = parsed(image, "target")
        return image, None if mask is None else editor.editor_value(mask)

    def upload_reference(path):
        image = editor.uploaded_photo(path, "reference")
        return image, parsed(image, "reference")

    def upload_reference_mask(path):
        return editor.uploaded_mask(path, "reference")

    def upload_mask(path):
        return editor.editor_value(editor.uploaded_mask(path, "target"))

    def brush_for(name):
        colour = editor.palette[ls.names.index(name)]
        return gr.ImageEditor(brush=gr.Brush(colors=editor.palette, default_color=colour, color_mode="fixed",
                                             default_size=brush_size))

    def run(application, target, target_mask, reference, reference_mask, parts, alpha, frames, n, sampler, steps,
            guidance_scale, null_condition, seed, keep, progress=gr.Progress(track_tqdm=True)):
        r = editor.run(application, target, target_mask, reference, reference_mask, parts, alpha, frames, n,
                       sampler, steps, guidance_scale, None if null_condition == MODEL_NULL else null_condition, seed,
                       keep)
        shown = [(enlarged(image), caption) for image, caption in r.images]  # downloads keep the true size
        return shown, shown[0][0], r.result_file, r.mask_file, r.status

    names = list(editor.examples)  # the page opens with a target and a reference chosen, so Run works at once
    first, second = (names[0], names[min(1, len(names) - 1)]) if names else (None, None)
    target0, mask0 = editor.example(first) if first else (None, None)
    reference0, reference_mask0 = editor.example(second, "reference") if second else (None, None)
    with gr.Blocks(title="scadm: semantic face editing") as page:
        gr.Markdown(f"## scadm: edit faces part by part (SCA-DM)\nModel: {editor.pipe.cfg.name}, "
                    f"{size[0]}x{size[1]} px, trained on {editor.knows}. Pick or upload a target face and its "
                    "mask, a reference face for the style, an application, and run.", elem_id="model-info")
        with gr.Row():
            with gr.Column():
                gr.Markdown("### Target face")
                target_pick = gr.Radio(names, value=first, label="Example target", elem_id="target-example")
                target = gr.Image(target0, label="Target face", type="numpy", image_mode="RGB", elem_id="target-image",
                                  sources=[], interactive=False, format="png")
                # uploads are files read by the CLI's rules, so a bad or hostile one is refused before decoding
                target_file = gr.File(label="Upload a target photo (parsed when a face parser runs)",
                                      type="filepath", file_types=["image"], elem_id="target-file", height=60)
                target_upload = gr.File(label="Upload a target mask (id map or palette colours)", type="filepath",
                                        file_types=["image"], elem_id="target-mask-upload", height=60)
            with gr.Column():
                gr.Markdown("### Target mask (paint to edit)")
                brush_class = gr.Dropdown(list(ls.names), value="hair", label="Brush class", elem_id="brush-class")
                target_mask = gr.ImageEditor(
                    editor.editor_value(mask0), label="Mask", type="numpy", image_mode="RGB", format="png", layers=False, sources=[],
                    brush=gr.Brush(colors=editor.palette, default_color=editor.palette[ls.names.index("hair")],
                                   color_mode="fixed", default_size=brush_size),
                    eraser=gr.Eraser(), transforms=(), elem_id="target-mask", canvas_size=size,
                )
                gr.HTML(editor.legend_html())
            with gr.Column():
                gr.Markdown("### Reference face")
                ref_pick = gr.Radio(names, value=second, label="Example reference", elem_id="reference-example")
                reference = gr.Image(reference0, label="Reference face", type="numpy", image_mode="RGB",
                                     elem_id="reference-image", sources=[], interactive=False, format="png")
                reference_mask = gr.Image(reference_mask0, label="Reference mask", type="numpy", image_mode="RGB",
                                          sources=[], interactive=False, elem_id="reference-mask", format="png")
                reference_file = gr.File(label="Upload a reference photo", type="filepath", file_types=["image"],
                                         elem_id="reference-file", height=60)
                reference_mask_file = gr.File(label="Upload a reference mask", type="filepath", file_types=["image"],
                                              elem_id="reference-mask-file", height=60)
        with gr.Row():
            with gr.Column():
                application = gr.Radio(list(APPLICATIONS), value="partial swap", label="Application",
                                       elem_id="application")
                parts = gr.CheckboxGroup(editor.part_names, value=["hair"] if "hair" in editor.part_names else None,
                                         label="Parts (partial swap, interpolation, mixed)", elem_id="parts")
                with gr.Row():
                    alpha = gr.Slider(0, 1, value=1.0, step=0.05, label="Interpolation: up to alpha")
                    frames = gr.Slider(2, 9, value=5, step=1, label="Interpolation: frames")
                    n = gr.Slider(1, 8, value=1, step=1, label="Samples (noise-based, mixed)")
            with gr.Column():
                cfg = editor.pipe.cfg.sampling
                sampler = gr.Dropdown(list(SAMPLERS), value=cfg.sampler, label="Sampler")
                steps = gr.Slider(1, 200, value=cfg.steps, step=1, label="Steps", elem_id="steps")
                guidance_scale = gr.Number(value=cfg.guidance_scale, label="Guidance scale s (paper Eq. 4)")
                from .conditioning_modes import NULL_CONDITIONS

                null_condition = gr.Dropdown([MODEL_NULL, *NULL_CONDITIONS], value=MODEL_NULL, label="Null condition")
                seed = gr.Number(value=0, precision=0, label="Seed")
                keep = gr.Checkbox(value=True, label="Keep the rest of the face", elem_id="keep-face",
                                   info="Invert the target and regenerate only the edited parts (edits of a given face)")
                go = gr.Button("Run", variant="primary", elem_id="run")
        with gr.Row():
            gallery = gr.Gallery(label="Results", columns=5, height=320, object_fit="contain", elem_id="gallery")
            result = gr.Image(label="Result (full resolution)", type="pil", elem_id="result", interactive=False,
                              format="png", height=320)
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                result_file = gr.File(label="Download the result", elem_id="result-file")
                mask_file = gr.File(label="Download its mask", elem_id="mask-file")

        # each event has an API name, for scripts (gradio_client: Client(url).predict(..., api_name="/edit"))
        target_pick.change(guarded(pick), target_pick, [target, target_mask], api_name="pick_target")
        ref_pick.change(guarded(pick_reference), ref_pick, [reference, reference_mask], api_name="pick_reference")
        target_file.upload(guarded(shown(upload_target)), target_file, [target, target_mask], api_name="upload_target")
        target_upload.upload(guarded(shown(upload_mask)), target_upload, target_mask, api_name="upload_target_mask")
        reference_file.upload(guarded(shown(upload_reference)), reference_file, [reference, reference_mask],
                              api_name="upload_reference")
        reference_mask_file.upload(guarded(shown(upload_reference_mask)), reference_mask_file, reference_mask,
                                   api_name="upload_reference_mask")
        brush_class.change(guarded(brush_for), brush_class, target_mask, api_name="brush")
        go.click(guarded(run), [application, target, target_mask, reference, reference_mask, parts, alpha, frames, n,
                                sampler, steps, guidance_scale, null_condition, seed, keep],
                 [gallery, result, result_file, mask_file, status], concurrency_limit=1, api_name="edit")
    return page


def with_warnings(fn: Any, *args: Any) -> tuple[Any, list[str]]:
    """fn(*args), and the distinct one-line texts of the user warnings it raised (for the page to show)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args)
    return out, list(dict.fromkeys(checks.one_line(str(w.message)) for w in caught
                                   if issubclass(w.category, UserWarning)))


def _as_upload(read: Any, path: str | Path, name: str) -> Any:
    """`read()`, with the upload's temporary path replaced by `name` in its errors and warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = read()
        except (OSError, ValueError) as exc:
            raise ValueError(checks.one_line(str(exc)).replace(str(path), name)) from None
    for w in caught:  # re-raised with the upload's name, for the page to show
        warnings.warn(str(w.message).replace(str(path), name), w.category, stacklevel=2)
    return out


#: results smaller than this are shown enlarged (nearest neighbour, whole factors) so a 64 px face is visible
DISPLAY_SIDE = 256


def enlarged(image: Image.Image) -> Image.Image:
    """`image` enlarged by the whole factor that brings its longer side nearest DISPLAY_SIDE (never shrunk)."""
    k = max(1, round(DISPLAY_SIDE / max(image.size)))
    return image if k == 1 else image.resize((image.width * k, image.height * k), Image.Resampling.NEAREST)


def private_uploads() -> Path:
    """A folder only this user can read (0700), removed when the app stops, for gradio's uploads and
    processed images (``GRADIO_TEMP_DIR``, set before gradio is imported); gradio's default is a
    shared folder that outlives the app."""
    import os

    folder = Path(tempfile.mkdtemp(prefix="scadm-app-uploads-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def _check_port_free(host: str, port: int) -> None:
    """A one-line error naming the port when another program listens on it (before any model is loaded)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ValueError(f"port {port} on {host} is in use ({exc.strerror or exc}); another program (or another "
                             "scadm app) serves there: stop it, or choose a free port with --port") from None


def serve(model: str | Path | None = None, parser: str | Path | None = None, host: str = "127.0.0.1",
          port: int = 7860, max_upload_mb: int = 20, device: str | None = None, block: bool = True,
          printer=print) -> Any:
    """Build and launch the page; returns the gradio app (``block=False``: the server runs in a thread)."""
    _check_port_free(host, port)
    private_uploads()
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("the web editor needs gradio: pip install 'scadm[app]'") from None
    editor = Editor(model, parser, device)
    page = build_page(editor)
    page.queue(default_concurrency_limit=1, max_size=32)  # one generation at a time
    where = "this machine only; --host 0.0.0.0 shares it on your network" if host in ("127.0.0.1", "localhost") \
        else "reachable from other machines: anyone who can reach it can use it"
    printer(f"scadm app: http://{host}:{port} ({where}); uploads up to {max_upload_mb} MB; Ctrl+C stops it")
    page.launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb}mb", prevent_thread_lock=not block,
                show_error=True, quiet=True, inbrowser=False)
    return page


def _rgb_codes(rgb: np.ndarray) -> np.ndarray:
    """One integer per RGB triple (for set membership)."""
    rgb = np.asarray(rgb, dtype=np.int64).reshape(-1, 3)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]

