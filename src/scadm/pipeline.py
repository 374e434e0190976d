"""The editing and generation API (SCA-DM paper Sec. 4, Fig. 1, 4, 5, 6, 7).

    pipe = SCADMPipeline.from_pretrained()            # the bundled model
    out = pipe.swap(target=("t.png", "t_mask.png"), reference=("r.png", "r_mask.png"), parts=["l_eye"])
    out.images[0].save("swapped.png")

Every operation works on style tokens (one row per class, or L rows per class for the
``per_scale`` layout) and then samples with the generation mask:

    reconstruct   tokens of (image, mask), generated with mask
    swap          reference tokens for all classes (total) or the named parts (partial),
                  pooled with the reference's own mask; generated with the target's mask
    interpolate   per-part linear blend of target and reference tokens, one image per alpha
    generate      the empty style (style encoder on a zero image), noise decides the style
    mix           reference tokens for the named parts, empty style for the rest
    edit_mask     the face's own tokens, generated with a new (user-edited) mask

Inputs: images and masks as file paths, PIL images, numpy arrays or tensors; masks as id
maps or colour images in the label set's palette. Randomness is per image: image i of a call
uses ``seed + i`` (or ``seeds[i]``), so a batch gives the same images as one-by-one calls.

Photos (:mod:`scadm.photos`): a file or PIL image that is not at the model's size, a face
given without its mask (``Face(image)``), or a :class:`~scadm.photos.Photo` (``pipe.photo``)
is a photo: its mask is parsed when not given (the parser rule of :attr:`SCADMPipeline.photo_parser`),
its face framed and cut out at the model's size, and the result's ``photos`` are the edits
pasted back into the full-resolution photo, changing only the edited region. Arrays and
tensors are crops (resized to the model's size with a warning), as before.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from . import checks
from .conditioning_modes import ConditioningMode
from .conditions import Conditions, conditions_batch, repeat_conditions
from .config import SCHEMA_VERSION, ModelConfig, SamplingConfig, SamplingOptions, from_dict, to_dict
from .diffusion import ClassifierFreeGuidance, Inversion, NoiseSchedule, invert, regeneration_kwargs, sample
from .diffusion.objective import randn
from .diffusion.schedule import sampler_of
from .diffusion.sampling import NonFiniteSampleError
from .labels import LabelSet
from .models.autoencoder import FirstStage
from .models.conditioning import ConditionEncoder
from .models.ldm import PIPELINE_INDEX, SemanticLDM
from .models.unet import SemanticUNet
from .nn.masks import MaskPyramid
from .photos import OWN_PARSER, Framing, Photo

ImageLike = Union[str, Path, Image.Image, np.ndarray, Tensor]
MaskLike = Union[str, Path, Image.Image, np.ndarray, Tensor]

#: The bundled default model, package data of scadm (scadm/bundled/synthetic-64; see its README.md),
#: so an installed wheel carries it; or the folder named by $SCADM_MODEL.
DEFAULT_MODEL = Path(__file__).resolve().parent / "bundled" / "synthetic-64"


def default_model_folder() -> Path:
    import os

    folder = Path(os.environ.get("SCADM_MODEL", DEFAULT_MODEL))
    if not any((folder / f).is_file() for f in (PIPELINE_INDEX, "config.json")):
        raise FileNotFoundError(
            f"the bundled model is not at {folder}; reinstall scadm, set SCADM_MODEL, or pass --model"
        )
    return folder


class LegacyFolderNote(UserWarning):
    """A model folder written by scadm < 0.2: it loads, and `scadm upgrade-model` rewrites it."""


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


#: latent blending's margin: the edited region grows by this many latent pixels (each f image
#: pixels wide) around the edited parts, so that their edges are regenerated with them
BLEND_MARGIN = 1


# ---------------------------------------------------------------------------
# Inputs and outputs
# ---------------------------------------------------------------------------
class EditWarning(UserWarning):
    """An edit asked for something the inputs cannot give (a part the target does not have)."""


@dataclass
class Face:
    """An image and its semantic mask (class ids in the model's label set); without a mask it is parsed."""

    image: ImageLike | Photo
    mask: MaskLike | None = None


@dataclass
class Source:
    """A target face for inversion and blending: its image (B, 3, H, W) in [-1, 1], its own
    conditions (style tokens of its own mask) and the pixels (B, H, W) the edit changes.

    `fresh`: with blending, the edited parts start from the seed's noise instead of the inverted
    latent (a mix: its reference parts mix with noise, as a mix from a mask does)."""

    image: Tensor
    conditions: Conditions
    edited: Tensor
    fresh: bool = False


@dataclass
class EditResult(BaseOutput):
    """What an application returns (a diffusers ``BaseOutput``).

    ``images``: in the call's ``output_type``: PIL images (``"pil"``, the default), a (B, H, W, 3)
    float array in [0, 1] (``"np"``), a (B, 3, H, W) tensor in [0, 1] (``"pt"``) or the final
    latents (``"latent"``, nothing decoded). ``tensors``: the decoded images as a (B, 3, H, W)
    tensor in [-1, 1] (None for ``"latent"``). ``masks``: the generation masks (class ids).
    ``info``: seeds, guidance, how each image was made (:attr:`how`).

    For an edit of a photo, ``sources[i]`` is the :class:`~scadm.photos.Photo` image i was cut
    from and ``edited[i]`` the class ids it edited (None: the whole face's square); ``photos``
    are the results pasted back into it at full resolution.
    """

    images: Any
    tensors: Tensor | None = None
    masks: list[np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    sources: list[Photo | None] = field(default_factory=list)
    edited: list[list[int] | None] = field(default_factory=list)

    @property
    def photos(self) -> list[Image.Image]:
        """Each result pasted back into its full-resolution photo (only the edited region changes); [] for crops."""
        if self.__dict__.get("_pasted") is None:
            from .photos import paste_back

            crops = to_pil(self.tensors) if self.tensors is not None else []
            self.__dict__["_pasted"] = [Image.fromarray(paste_back(src, im, parts))
                                        for im, src, parts in zip(crops, self.sources, self.edited) if src is not None]
        return self.__dict__["_pasted"]

    @property
    def how(self) -> str:
        """How the images were made, in words: sampled from noise, the face inverted (and the rest
        kept), or the first stage's encode-decode (a blended edit that edits nothing)."""
        skipped = self.info.get("inversion_skipped")
        inversion = self.info.get("inversion", "none")
        if skipped and inversion != "none":  # nothing edited: no denoiser pass
            return f"{skipped} (nothing sampled)"
        if inversion == "none":
            return f"sampled from noise ({skipped})" if skipped else "sampled from noise"
        reused = " (reused)" if self.info.get("inversion_reused") else ""
        return f"{inversion} inversion{reused}" + (", the rest of the face kept" if self.info.get("blend") else "")

    def with_photos(self, sources: Sequence[Photo | None], edited: Sequence[list[int] | None]) -> "EditResult":
        """This result, knowing the photo each image belongs to and what it edited (one entry or one per image)."""
        n = len(self.images)
        self.sources = list(sources) * n if len(sources) == 1 else list(sources)
        self.edited = list(edited) * n if len(edited) == 1 else list(edited)
        self.__dict__["_pasted"] = None
        return self


def to_pil(x: Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> PIL images."""
    arr = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


#: the values of diffusers' ``output_type``
OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def as_output_type(x: Tensor, output_type: str) -> Any:
    """Decoded images (B, 3, H, W) in [-1, 1] in diffusers' ``output_type`` ("pil", "np" or "pt")."""
    if output_type == "pil":
        return to_pil(x)
    unit = ((x.detach().float() + 1) / 2).clamp(0, 1)
    return unit.permute(0, 2, 3, 1).cpu().numpy() if output_type == "np" else unit


@dataclass
class InversionOutput(BaseOutput):
    """A face inverted once (:meth:`SCADMPipeline.invert`), for every later edit of it (``inversion=``).

    ``latents``: x_T (B, C, h, w); ``trajectory``: the inverted latent at every level the solver
    visits (x_T first, the face's own latent last); ``offsets``: exact inversion's per-step record
    (None for ``ddim``). The rest says what it is valid for: the strategy, solver, steps, guidance
    scale and null condition, the scheduler settings, the face (``image``, in [-1, 1]) and its own
    ``conditions`` (mask and style tokens); ``evaluations``: the guided evaluations it cost, which
    the first edit that uses it reports as its own (``info["inversion_evaluations"]``); later edits
    report 0 and ``info["inversion_reused"]``.
    """

    latents: Tensor
    trajectory: list[Tensor]
    offsets: list[Tensor] | None
    strategy: str
    sampler: str
    steps: int
    guidance_scale: float
    null_condition: str
    scheduler_kwargs: dict[str, Any]
    image: Tensor
    conditions: Conditions
    evaluations: int

    @property
    def edits(self) -> int:
        """How many edits have started from this inversion."""
        return self.__dict__.get("edits", 0)

    def for_edit(self, source: "Source", run: Any, s: float, scheduler_kwargs: dict[str, Any]) -> Inversion:
        """This inversion as the edit of `source` under `run` starts from it; a one-line error when it
        was made for another face, other conditions or other settings."""
        ours = (self.strategy, self.sampler, self.steps, self.guidance_scale, self.null_condition)
        theirs = (run.inversion, run.sampler, run.steps, s, run.null_condition)
        if ours != theirs:
            raise ValueError(f"inversion: made as {_settings_words(*ours)}; this edit is {_settings_words(*theirs)}: "
                             "invert again with the edit's settings, or leave inversion out")
        if self.scheduler_kwargs != scheduler_kwargs:
            raise ValueError(f"inversion: made with scheduler settings {self.scheduler_kwargs}, this edit's are "
                             f"{scheduler_kwargs}: invert again after changing the scheduler")
        if not _same_rows(self.image, source.image):
            raise ValueError("inversion: made for another face (the edit's target image differs); invert this face")
        mine, theirs_c = self.conditions, source.conditions
        if not (_same_rows(mine.mask, theirs_c.mask) and (mine.tokens is None) == (theirs_c.tokens is None) and
                (mine.tokens is None or _same_rows(mine.tokens, theirs_c.tokens))):
            raise ValueError("inversion: made for the face with another mask or style (or attributes); invert the "
                             "face as this edit gives it")
        self.__dict__["edits"] = self.edits + 1
        device = source.image.device
        move = lambda z: z.to(device)  # noqa: E731
        return Inversion(move(self.latents), [move(z) for z in self.trajectory], self.sampler, self.steps,
                         self.evaluations, None if self.offsets is None else [move(d) for d in self.offsets])


def _same_rows(made: Tensor, given: Tensor) -> bool:
    """`given` (B, ...) equals `made` (B or 1, ...): the face inverted, or it repeated for B images of one call."""
    if made.shape[1:] != given.shape[1:] or made.shape[0] not in (1, given.shape[0]):
        return False
    return torch.equal(made.expand_as(given), given.to(made))


def _settings_words(strategy: str, sampler: str, steps: int, s: float, null: str) -> str:
    return f"{strategy} with {sampler} at {steps} steps, s = {s:g} ({null} null)"


# ---------------------------------------------------------------------------
# diffusers' call keywords
# ---------------------------------------------------------------------------
@dataclass
class CallOptions:
    """diffusers' per-call keywords, in force for the duration of one application call."""

    output_type: str = "pil"
    generator: torch.Generator | list[torch.Generator] | None = None
    callback_on_step_end: Callable | None = None
    callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",)


#: the call in progress (None outside an application); an application called by another one
#: (swap_mask_parts -> generate) runs inside its caller's call
_CALL: ContextVar[CallOptions | None] = ContextVar("scadm_call", default=None)
#: the tensors a step-end callback can read and replace
CALLBACK_TENSOR_INPUTS = ("latents",)


def diffusers_call(method: Callable) -> Callable:
    """An application that takes diffusers' call keywords besides its own: ``num_inference_steps``
    (this project's ``steps``), ``guidance_scale`` (s; the released w = 1 + s), ``generator`` (one
    generator, or one per image, instead of ``seed``), ``output_type``, ``return_dict`` and
    ``callback_on_step_end(pipe, step, timestep, callback_kwargs) -> dict`` with
    ``callback_on_step_end_tensor_inputs`` (``["latents"]``: the dict it returns may replace them)."""

    @functools.wraps(method)
    def call(self: "SCADMPipeline", *args: Any, output_type: str = "pil", return_dict: bool = True,
             generator: Any = None, callback_on_step_end: Callable | None = None,
             callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
             num_inference_steps: int | None = None, **kwargs: Any) -> Any:
        if _CALL.get() is not None:  # called by another application: its call's keywords hold
            return method(self, *args, **kwargs)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type {output_type!r}: choose one of {', '.join(OUTPUT_TYPES)}")
        unknown = sorted(set(callback_on_step_end_tensor_inputs) - set(CALLBACK_TENSOR_INPUTS))
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {unknown}: a step-end callback can read "
                             f"{', '.join(CALLBACK_TENSOR_INPUTS)}")
        if num_inference_steps is not None:
            if kwargs.get("steps") not in (None, num_inference_steps):
                raise ValueError("give num_inference_steps or steps, not both")
            kwargs["steps"] = num_inference_steps
        token = _CALL.set(CallOptions(output_type, generator, callback_on_step_end,
                                      tuple(callback_on_step_end_tensor_inputs)))
        try:
            result = method(self, *args, **kwargs)
        finally:
            _CALL.reset(token)
        return result if return_dict else (result[0],)

    return call


# ---------------------------------------------------------------------------
# Token editing (pure functions; the released code's partial swap and mixing)
# ---------------------------------------------------------------------------
def class_rows(token_classes: Tensor, classes: Iterable[int]) -> Tensor:
    """Bool (N,) selecting the token rows that belong to any of `classes`."""
    wanted = torch.tensor(sorted(set(int(c) for c in classes)), dtype=torch.long, device=token_classes.device)
    return torch.isin(token_classes, wanted)


def swap_tokens(target: Tensor, reference: Tensor, classes: Iterable[int] | Sequence[Iterable[int]] | None,
                token_classes: Tensor) -> Tensor:
    """Copy the reference's token rows of `classes` (all rows when None) into the target's tokens.

    `classes` may also hold one list per image of the batch (a different partial swap for each).
    """
    reference = reference.to(target.dtype).expand_as(target)
    if classes is None:
        rows = (token_classes >= 0).expand(target.shape[0], -1)
    elif _per_image(classes):
        if len(classes) != target.shape[0]:
            raise ValueError(f"got {len(classes)} part lists for {target.shape[0]} images")
        rows = torch.stack([class_rows(token_classes, c) for c in classes])
    else:
        rows = class_rows(token_classes, classes).expand(target.shape[0], -1)
    return torch.where(rows[..., None], reference, target)


def _sampling(sampling: SamplingOptions | None, overrides: dict[str, Any]) -> SamplingOptions:
    """The call's SamplingOptions: `sampling` (or the defaults) with keyword overrides applied."""
    base = sampling or SamplingOptions()
    if not overrides:
        return base
    names = {f.name for f in dataclasses.fields(SamplingOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown sampling option(s) {unknown}; valid: {sorted(names)}")
    return dataclasses.replace(base, **overrides)


def _per_image(classes: Any) -> bool:
    return isinstance(classes, (list, tuple)) and len(classes) > 0 and isinstance(classes[0], (list, tuple))


def interpolate_tokens(target: Tensor, reference: Tensor, alpha: float, classes: Iterable[int] | None,
                       token_classes: Tensor) -> Tensor:
    """(1 - alpha) * target + alpha * reference on the rows of `classes` (all when None)."""
    rows = token_classes >= 0 if classes is None else class_rows(token_classes, classes)
    out = target.clone()
    out[:, rows] = (1 - alpha) * target[:, rows] + alpha * reference[:, rows].to(target.dtype)
    return out


def mix_mask_parts(mask: np.ndarray, donor: np.ndarray, parts: Iterable[int]) -> np.ndarray:
    """The donor's `parts` pasted over `mask` (multi-conditioning paper Sec. 5, as class-id maps).

    Each part is first removed from `mask` (its pixels take the nearest remaining class, by
    repeated 4-neighbour growth), then the donor's pixels of that part are painted on top.
    """
    parts = sorted(set(int(p) for p in parts))
    out = mask.astype(np.int64).copy()
    hole = np.isin(out, parts)
    out[hole] = -1
    while (out < 0).any():
        grown = out.copy()
        padded = np.pad(out, 1, constant_values=-1)
        for shifted in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
            fill = (grown < 0) & (shifted >= 0)
            grown[fill] = shifted[fill]
        if (grown == out).all():  # nothing left to grow from
            grown[grown < 0] = 0
        out = grown
    for p in parts:
        out[donor == p] = p
    return out.astype(np.uint8)


# ---------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------
class SCADMPipeline(DiffusionPipeline):
    """Reference-based, partial, interpolated, noise-based and mixed face generation.

    A diffusers ``DiffusionPipeline``. Components: ``unet`` (:class:`~scadm.models.unet.SemanticUNet`),
    ``condition_encoder`` (:class:`~scadm.models.conditioning.ConditionEncoder`), ``vae`` (diffusers'
    ``VQModel`` or ``AutoencoderKL``), ``scheduler`` (the model's default solver, a diffusers
    scheduler) and the optional ``face_parser``. Everything else a model is, its label set, image
    and latent sizes, noise schedule, sampling defaults and domain (the fields of
    :class:`~scadm.config.ModelConfig` besides ``unet`` and ``conditioning``), is the pipeline's
    config, written to ``model_index.json`` by ``save_pretrained``.
    """

    model_cpu_offload_seq = "condition_encoder->unet->vae"
    _optional_components = ["face_parser"]

    def __init__(self, unet: SemanticUNet, condition_encoder: ConditionEncoder, vae: Any, scheduler: Any,
                 face_parser: Any = None, name: str = "custom", schema_version: int = SCHEMA_VERSION,
                 labels: Any = "celebamask-hq", image_size: list[int] = (256, 256), latent_channels: int = 3,
                 latent_downsample: int = 4, latent_scale: float = 1.0, schedule: dict | None = None,
                 sampling: dict | None = None, autoencoder: Any = None, domain: str | None = None) -> None:
        super().__init__()
        settings = dict(name=name, schema_version=schema_version, labels=labels, image_size=list(image_size),
                        latent_channels=latent_channels, latent_downsample=latent_downsample,
                        latent_scale=latent_scale, schedule=schedule, sampling=sampling, autoencoder=autoencoder,
                        domain=domain)
        cfg = from_dict(ModelConfig, {**{k: v for k, v in settings.items() if v is not None}, "unet": {},
                                      "conditioning": {}})
        self.cfg = dataclasses.replace(cfg, unet=unet.cfg, conditioning=condition_encoder.cfg).validate()
        if self.cfg.latent_scale <= 0:
            raise ValueError("the model config has latent_scale 0 ('set at training'): it was never trained")
        self.schedule = NoiseSchedule(self.cfg.schedule)  # before the scheduler: it is rebuilt on this schedule
        self.register_modules(unet=unet, condition_encoder=condition_encoder, vae=vae, scheduler=scheduler,
                              face_parser=face_parser)
        self.register_to_config(**settings)
        self.model = SemanticLDM.from_networks(self.cfg, condition_encoder, unet).eval().requires_grad_(False)
        self.first_stage = FirstStage(vae, self.cfg.latent_scale).eval().requires_grad_(False)
        self.label_set: LabelSet = self.model.label_set
        self.parser_spec, self.model_folder, self.framing = None, None, Framing()
        self._photo_parser: Any = None

    @classmethod
    def from_networks(cls, model: SemanticLDM, first_stage: FirstStage, face_parser: Any = None,
                      device: str | torch.device | None = None) -> "SCADMPipeline":
        """A pipeline around networks in memory (a training run's, a converted checkpoint's); its
        scheduler is the model's default solver built from its noise schedule."""
        cfg = model.cfg
        scheduler = NoiseSchedule(cfg.schedule).make_scheduler(cfg.sampling.sampler)
        settings = {k: v for k, v in to_dict(cfg).items() if k not in ("unet", "conditioning")}
        pipe = cls(model.unet, model.conditioner, first_stage.model, scheduler, face_parser, **settings)
        return pipe.to(_device(device))

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, device: str | torch.device | None = None,
                        parser: Any = None, framing: Framing = Framing(), torch_dtype: torch.dtype | None = None,
                        dtype: torch.dtype | None = None, **kwargs: Any) -> "SCADMPipeline":
        """Load a model folder (``model_index.json`` and its components, as ``save_pretrained`` writes
        it; a folder of scadm < 0.2, ``config.json`` + ``model.safetensors`` + ``autoencoder/``, loads
        too, with a note); None = the bundled model.

        `device`: where to run (default: cuda when available); `torch_dtype` (or `dtype`, the name
        newer diffusers prefer): the components' dtype;
        `parser`: the face parser for photos given without a mask (see :attr:`photo_parser`).
        """
        folder = checks.model_folder(folder, "model") if folder is not None else default_model_folder()
        if device is not None:
            checks.device(str(device), "device")
        if isinstance(parser, (str, Path)):
            parser = _parser_path(parser, "parser")
        torch_dtype = dtype or torch_dtype
        if (folder / PIPELINE_INDEX).is_file():
            from diffusers.utils import logging as diffusers_logging

            from .models import face_parser as _  # noqa: F401 - diffusers loads only classes of imported modules

            shown = diffusers_logging.is_progress_bar_enabled()
            diffusers_logging.disable_progress_bar()  # five small components: no "Loading pipeline components" bar
            try:
                pipe = super().from_pretrained(str(folder), dtype=torch_dtype, local_files_only=True,
                                               low_cpu_mem_usage=False, **kwargs)
            finally:
                if shown:
                    diffusers_logging.enable_progress_bar()
        else:
            warnings.warn(LegacyFolderNote(f"{folder}: a model folder of scadm < 0.2 (config.json, model.safetensors); "
                                           f"`scadm upgrade-model {folder} NEW` writes it as a diffusers pipeline"),
                          stacklevel=2)
            pipe = cls._from_legacy(folder)
            if torch_dtype is not None:
                pipe.to(dtype=torch_dtype)
        pipe.to(_device(device))
        pipe.parser_spec, pipe.model_folder, pipe.framing = parser, folder, framing
        return pipe

    @classmethod
    def _from_legacy(cls, folder: Path) -> "SCADMPipeline":
        from .models.face_parser import BiSeNetParser, load_parser

        model = SemanticLDM.from_pretrained(folder)
        own, parser = folder / "parser", None
        if (own / "parser.json").is_file():
            parser = load_parser(own)
        elif sorted(own.glob("*.pth")):
            parser = BiSeNetParser.from_file(sorted(own.glob("*.pth"))[0])
        return cls.from_networks(model, FirstStage.from_pretrained(folder / "autoencoder", model.cfg.latent_scale),
                                 parser, device="cpu")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "scheduler" and value is not None:
            # a scheduler scadm cannot sample with is refused here, in one line; another is rebuilt on the model's
            # noise schedule and prediction type, with the settings it was given (e.g. use_karras_sigmas=True)
            # and the project's defaults for the rest, so that it samples the same after save and reload
            value = self.schedule.make_scheduler(sampler_of(value), **self.schedule.overrides(value))
        super().__setattr__(name, value)

    def to(self, *args: Any, **kwargs: Any) -> "SCADMPipeline":
        """diffusers' ``to(device, dtype)``, without its warning about float32 modules (scadm's have none)."""
        from diffusers.utils import logging as diffusers_logging

        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()
        try:
            return super().to(*args, **kwargs)
        finally:
            diffusers_logging.set_verbosity(level)

    @property
    def sampling_defaults(self) -> SamplingConfig:
        """The model's sampling defaults, with the sampler of the pipeline's ``scheduler`` (assign
        another diffusers scheduler to change it; its own settings, e.g. a spacing, are kept)."""
        return dataclasses.replace(self.cfg.sampling, sampler=sampler_of(self.scheduler))

    def scheduler_kwargs(self, sampler: str) -> dict[str, Any]:
        """The settings of the pipeline's ``scheduler`` that differ from the project's defaults for
        `sampler` (none when `sampler` is another solver than the scheduler's); a sampler named in a
        call takes them too when it is the scheduler's."""
        return self.schedule.overrides(self.scheduler) if sampler == sampler_of(self.scheduler) else {}

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """Write the pipeline as diffusers does (``model_index.json``, one folder per component),
        without the local path diffusers records in each component's config. The model's default
        sampler written is the ``scheduler``'s."""
        from safetensors.torch import save_file

        self.register_to_config(sampling=to_dict(self.sampling_defaults))
        super().save_pretrained(str(save_directory), safe_serialization=True, **kwargs)
        for cfg_path in Path(save_directory).glob("*/config.json"):
            cfg = json.loads(cfg_path.read_text())
            if cfg.pop("_name_or_path", None) is not None:
                cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
            weights = cfg_path.parent / "diffusion_pytorch_model.safetensors"
            if not weights.exists():  # a network without weights (the encoder of a mode that encodes nothing):
                save_file({}, str(weights))  # diffusers writes no file but loads one

    # ------------------------------------------------------------------ photos
    @property
    def photo_parser(self) -> Any:
        """The :class:`~scadm.photos.FaceParser` for photos without a mask, or None. One rule: the
        ``parser`` given to the pipeline (``--parser``), else ``$SCADM_PARSER``, else the pipeline's own
        ``face_parser`` unless it knows only scadm's synthetic faces (the bundled model's), else none."""
        if self._photo_parser is None:
            from .photos import load_face_parser, resolve_parser

            found = resolve_parser(self.parser_spec, self.model_folder)
            if found is not None:
                spec, where = found
                if where == OWN_PARSER and self.face_parser is not None:
                    spec = self.face_parser  # the component already loaded
                name = f"{spec} ({where})" if isinstance(spec, (str, Path)) else where
                self._photo_parser = load_face_parser(spec, self.label_set, self._square_side(), self._execution_device, name)
        return self._photo_parser

    def _square_side(self) -> int:
        h, w = self.image_size
        return max(h, w)

    def photo(self, image: ImageLike, mask: MaskLike | None = None, framing: Framing | None = None,
              mask_option: str = "mask=") -> Photo:
        """A photo made ready for this model: mask given or parsed, face framed and cut out (scadm.photos).
        `mask_option`: how the caller gives this photo's mask, named in errors (the CLI's option)."""
        from .photos import no_parser_error, prepare_photo

        parser = None
        if mask is None:
            parser = self.photo_parser
            if parser is None:
                raise no_parser_error(str(image) if isinstance(image, (str, Path)) else "the photo", mask_option,
                                      self.model_folder)
        return prepare_photo(image, mask, size=self.image_size, label_set=self.label_set, parser=parser,
                             framing=framing or self.framing, mask_option=mask_option)

    def is_photo(self, image: Any, mask: Any) -> bool:
        """A photo rather than a crop: a Photo, an image without a mask, or a file / PIL image not at the model's size."""
        if isinstance(image, Photo) or mask is None:
            if isinstance(image, Tensor):
                raise ValueError("a tensor image needs its mask; give a file, PIL image or uint8 array to have it parsed")
            return True
        if not self.frames_faces:
            return False
        if isinstance(image, (str, Path)):
            path = checks.input_file(image, "image", "image file")
            try:
                with Image.open(path) as im:  # the header only: a large photo is decoded once, later
                    size = im.size
            except Exception:  # noqa: BLE001 - open_image says what is wrong with the file, in one line
                from .data.layout import open_image

                open_image(path).close()
                raise
        elif isinstance(image, Image.Image):
            size = image.size
        else:
            return False
        return tuple(size[::-1]) != self.image_size

    @property
    def frames_faces(self) -> bool:
        """Whether photos can be framed: the model's label set is a face label set (it has skin)."""
        return "skin" in self.label_set.names

    def _input(self, image: Any, mask: Any) -> tuple[Tensor, Tensor, Photo | None]:
        """An image and its mask as (1, 3, H, W), (1, H, W) at the model's size, and the Photo they come from."""
        if not self.is_photo(image, mask):
            return self.load_image(image), self.load_mask(mask), None
        photo = image if isinstance(image, Photo) else self.photo(image, mask)
        return self.load_image(photo.crop), self.load_mask(photo.crop_mask), photo

    def generation_mask(self, mask: Any) -> tuple[Tensor, Photo | None]:
        """A generation mask: a Face / Photo (framed; the result is pasted into it), a mask file or PIL
        image not at the model's size (framed by its face), or a crop's mask."""
        if isinstance(mask, (Face, Photo)):
            _, ids, photo = self._face(mask)
            return ids, photo
        if isinstance(mask, (str, Path, Image.Image)):
            from .photos import face_class_ids, frame_mask, read_mask

            arr = read_mask(checks.input_file(mask, "mask", "mask file") if isinstance(mask, (str, Path)) else mask,
                            self.label_set)
            if arr.shape != self.image_size and self.frames_faces:
                if not np.isin(arr, face_class_ids(self.label_set)).any():
                    h, w = arr.shape
                    raise ValueError(f"{mask}: a {w}x{h} mask, not at the model's size, is framed by its face (any size "
                                     "or aspect ratio), but this one has no face pixels (skin, eyes, mouth ...); give "
                                     f"a mask of a face, or one at {self.image_size[1]}x{self.image_size[0]}")
                arr, _ = frame_mask(arr, self.image_size, self.label_set, self.framing, name=str(mask))
            return self.load_mask(arr), None
        return self.load_mask(mask), None

    # ------------------------------------------------------------------ input handling
    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.cfg.image_size)

    def load_image(self, image: ImageLike) -> Tensor:
        """-> (1, 3, H, W) in [-1, 1] at the model's size (bicubic resize with a warning)."""
        if isinstance(image, Tensor):
            x = image.float()
            x = x[None] if x.ndim == 3 else x
            if x.min() >= 0 and x.max() > 1.0:  # uint8-like values
                x = x / 127.5 - 1
        else:
            if isinstance(image, (str, Path)):
                from .data.layout import load_image

                arr = load_image(checks.input_file(image, "image", "image file"))
            elif isinstance(image, Image.Image):
                arr = np.asarray(image.convert("RGB"))
            else:
                arr = np.asarray(image)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"an image must be H x W x 3, got shape {arr.shape}")
            x = torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
        return self._fit(x, "image", mode="bicubic").clamp(-1, 1).to(self._execution_device)

    def load_mask(self, mask: MaskLike) -> Tensor:
        """-> (1, H, W) long class ids at the model's size (nearest resize with a warning)."""
        if isinstance(mask, (str, Path)):
            from .data.layout import load_mask_file

            ids = torch.from_numpy(load_mask_file(checks.input_file(mask, "mask", "mask file"), self.label_set).astype(np.int64))
        elif isinstance(mask, Image.Image):
            arr = np.asarray(mask)
            ids = torch.from_numpy((self.label_set.from_colors(arr) if arr.ndim == 3 else arr).astype(np.int64))
        elif isinstance(mask, np.ndarray):
            colour = mask.ndim == 3 and mask.shape[-1] in (3, 4)  # (H, W, 3) colour image; (B, H, W) id maps
            ids = torch.from_numpy((self.label_set.from_colors(mask) if colour else mask).astype(np.int64))
        else:
            ids = mask.long()
            if ids.ndim == 4:  # one-hot (B, C, H, W)
                ids = ids.argmax(1)
        ids = ids[None] if ids.ndim == 2 else ids
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.label_set.num_classes):
            raise ValueError(f"mask has class id {int(ids.max())}; the label set has {self.label_set.num_classes} classes")
        ids = self._fit(ids[:, None].float(), "mask", mode="nearest")[:, 0].long()
        return ids.to(self._execution_device)

    def _fit(self, x: Tensor, what: str, mode: str) -> Tensor:
        h, w = self.image_size
        if tuple(x.shape[-2:]) == (h, w):
            return x
        ih, iw = x.shape[-2:]
        if abs(ih / iw - h / w) > 0.01:
            raise ValueError(f"{what} is {ih}x{iw} but the model works at {h}x{w}: the aspect ratio differs; crop it first")
        warnings.warn(f"{what} resized from {ih}x{iw} to {h}x{w} ({mode})", stacklevel=3)
        if mode == "nearest":
            return F.interpolate(x, size=(h, w), mode="nearest")
        return F.interpolate(x, size=(h, w), mode=mode, align_corners=False, antialias=True)

    def one_hot(self, ids: Tensor) -> Tensor:
        return F.one_hot(ids, self.label_set.num_classes).permute(0, 3, 1, 2).float()

    def _face(self, face: Face | tuple | Photo) -> tuple[Tensor, Tensor, Photo | None]:
        if isinstance(face, Photo):
            return self._input(face, None)
        if isinstance(face, tuple):
            face = Face(*face)
        return self._input(face.image, face.mask)

    def parts(self, parts: Iterable[str | int] | str | None) -> list[int] | list[list[int]] | None:
        """Part names or ids -> class ids (None stays None = every part; one list per image stays per image)."""
        if parts is None:
            return None
        if _per_image(parts):
            return [self.label_set.indices(p) for p in parts]
        return self.label_set.indices(parts)

    # ------------------------------------------------------------------ style tokens
    @torch.no_grad()
    def style_tokens(self, image: Tensor | None, ids: Tensor) -> Tensor:
        """E_s(image, mask) (image None = the empty style)."""
        return self.model.conditions(self.one_hot(ids), image).tokens

    @property
    def token_classes(self) -> Tensor:
        return self.model.unet.token_classes

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate_from_tokens(self, ids: Tensor, tokens: Tensor | None, options: SamplingOptions | None = None,
                             *, style_image: bool = True, attributes: bool = False,
                             noise_based: bool = False, source: "Source | None" = None) -> EditResult:
        """Sample images for generation masks `ids` (B, H, W) and style `tokens` (B, N, D)."""
        return self.generate_from_conditions(ids, Conditions(mask=self.one_hot(ids), tokens=tokens), options,
                                             style_image=style_image, attributes=attributes, noise_based=noise_based,
                                             source=source)

    @torch.no_grad()
    def generate_from_conditions(self, ids: Tensor, cond: Conditions, options: SamplingOptions | None = None,
                                 *, style_image: bool = True, attributes: bool = False,
                                 noise_based: bool = False, source: "Source | None" = None) -> EditResult:
        """Sample images for masks `ids` (B, H, W) and encoded conditions, guided against the null condition.

        `style_image` / `attributes`: whether `cond` was encoded from a style image / from attributes
        (when neither, it may be its own null, and guidance is skipped: see
        :meth:`ConditioningMode.is_own_null`); `noise_based`: the null condition defaults to the
        model's noise-based one. `source`: the target face, for ``options.inversion`` / ``blend``.
        """
        o = options or SamplingOptions()
        call = _CALL.get() or CallOptions()
        run = o.resolve(self.sampling_defaults, noise_based=noise_based, face=source is not None)
        s = self._edit_guidance(run, style_image, attributes)
        b = ids.shape[0]
        seeds = o.seeds(b) if call.generator is None else None
        latent = self.cfg.latent_size

        model_fn = self._guided(cond.mask, run.null_condition, s, o.autocast_dtype)
        prepared = self.model.prepare(cond, latent)
        x_T, keep, offsets, info = None, None, None, {"inversion": run.inversion, "blend": run.blend}
        clip = run.clip_x0
        every = None if source is None else source.edited.flatten(1).all(1)  # faces whose every pixel is edited
        if run.inversion != "none" and run.blend and bool(every.all()):
            # every part edited (a total swap): nothing of the target to keep, so it samples from noise
            info.update(inversion="none", inversion_skipped="every part is edited: nothing to keep")
        z = None
        if run.inversion != "none" and run.blend and not bool(source.edited.any()):
            # nothing edited (a reconstruction): blending keeps every latent pixel on the inverted trajectory,
            # whose end is the target's own first-stage latent, so that latent is the result, bit for bit
            z = self.first_stage.encode(source.image)
            z = z.expand(b, *z.shape[1:]) if z.shape[0] == 1 else z
            info.update(inversion_skipped="nothing is edited: the first stage's reconstruction")
        inverting = info["inversion"] != "none" and z is None
        if inverting:
            extra = self._inversion_kwargs(run)
        else:
            extra = self.scheduler_kwargs(run.sampler)
            if clip and run.sampler in ("ddim", "ddpm"):
                extra.update(clip_sample=True, clip_sample_range=float(clip))
        gens = call.generator if seeds is None else [torch.Generator(self._execution_device).manual_seed(int(x))
                                                      for x in seeds]
        try:
            if inverting:
                reused = o.made_inversion is not None and o.made_inversion.edits > 0
                inv = self._inverted(source, o, s, run, extra).expand(b)
                x_T, offsets = inv.x_T, inv.offsets
                info.update(inversion_solver=run.sampler, inversion_evaluations=0 if reused else inv.evaluations,
                            inversion_reused=reused)
                if run.blend:
                    # the edited parts start from the inverted latent too, under the edited conditions (with
                    # exact's offsets); the rest follows the inversion. A face of a batch whose every part
                    # is edited keeps nothing, and a fresh source's parts mix with noise: they start from
                    # the seed's noise, without offsets
                    region = self.blend_region(source.edited, b)
                    keep = (region, inv.trajectory)
                    every = every.expand(b) if every.shape[0] == 1 else every
                    w = every.to(x_T.dtype)[:, None, None, None]
                    if source.fresh:
                        w = torch.maximum(w, region)
                    if bool(w.any()):
                        x_T = torch.lerp(x_T, randn(tuple(x_T.shape), generator=gens, device=self._execution_device,
                                                    dtype=x_T.dtype), w)
                        offsets = None if offsets is None else [d * (1 - w) for d in offsets]
            if z is None:
                z = sample(
                    model_fn, (b, self.cfg.latent_channels, *latent), prepared, self.schedule,
                    sampler=run.sampler, steps=run.steps, eta=run.eta, x_T=x_T, keep=keep, offsets=offsets,
                    generator=gens, device=self._execution_device, progress=o.progress, scheduler_kwargs=extra or None,
                    callback=self._step_end(call),
                )
        except NonFiniteSampleError as exc:
            raise NonFiniteSampleError(f"{exc}, guidance s = {s:g} ({run.null_condition} null), clip_x0 {clip}; "
                                       "nothing was written: lower the guidance scale, or set the model config's sampling.clip_x0 "
                                       "(DDIM and DDPM)") from None
        info = {"seeds": seeds, "guidance_scale": s, "null_condition": run.null_condition, "sampler": run.sampler,
                "steps": run.steps, **info}
        masks = [m.cpu().numpy().astype(np.uint8) for m in ids]
        if call.output_type == "latent":
            return EditResult(z.float(), None, masks, info)
        x = self.first_stage.decode(z).float().clamp(-1, 1)
        return EditResult(as_output_type(x, call.output_type), x, masks, info)

    def _step_end(self, call: CallOptions) -> Callable | None:
        """diffusers' ``callback_on_step_end`` as the sampler's step callback: it sees the latents
        after each step and may return replacements."""
        if call.callback_on_step_end is None:
            return None

        def step_end(i: int, t: int, x: Tensor) -> Tensor | None:
            given = {"latents": x} if "latents" in call.callback_on_step_end_tensor_inputs else {}
            out = call.callback_on_step_end(self, i, t, given) or {}
            return out.get("latents")

        return step_end

    def _guided(self, mask: Tensor, null_condition: str, s: float, low: Any) -> ClassifierFreeGuidance:
        """The denoiser guided at scale `s` against the null condition of `mask` (built only when s != 0),
        in `low` autocast precision (None: float32); guidance and the solver stay in float32."""
        latent = self.cfg.latent_size

        def null(cond: Any) -> Any:  # for a condition of batch k x B (several steps in one batch): repeated k times
            prepared = self.model.prepare(self.model.conditioner.null(mask, null_condition), latent)
            times = (conditions_batch(cond) or mask.shape[0]) // mask.shape[0]
            return repeat_conditions(prepared, times)

        def net(x: Tensor, t: Tensor, c: Any, unet: Any = self.model.unet) -> Tensor:
            return unet(x, t, c).float()  # the unet runs in its own dtype (a bf16 pipeline's); the solver in float32

        if low is not None:  # autocast for the denoiser alone
            def net(x: Tensor, t: Tensor, c: Any, unet: Any = self.model.unet) -> Tensor:
                with torch.autocast(self._execution_device.type, dtype=low):
                    return unet(x, t, c).float()

        return ClassifierFreeGuidance(net, null, s)

    # ------------------------------------------------------------------ inversion
    @diffusers_call
    @torch.no_grad()
    def invert(self, image: ImageLike | Face | Photo | Sequence, mask: MaskLike | None = None, attributes: Any = None,
               sampling: SamplingOptions | None = None, **overrides: Any) -> "InversionOutput":
        """Invert a face once, for any number of edits of it (``inversion=`` of every edit of a target).

        The face's first-stage latent is inverted under its own conditions with the call's solver,
        steps and guidance (the model's defaults unless given; ``inversion`` "exact", the default,
        or "ddim"), as an edit would invert it. The result holds the latents at every level, the
        exact offsets, and the settings and conditions it is valid for: an edit of another face, or
        with other steps, solver, guidance or null condition, is refused in one line.
        """
        self._need_style("invert")
        x, ids, _ = self._faces(image) if isinstance(image, (Face, Photo, tuple)) else self._batch(image, mask)
        tokens = self.with_attributes(self.style_tokens(x, ids), self.attribute_vector(attributes, ids.shape[0]))
        o = _sampling(sampling, overrides)
        if o.inversion == "none" or o.made_inversion is not None:
            raise ValueError("invert: inversion 'none' or an inversion already made; use 'exact' (the default) or 'ddim'")
        if o.inversion is None:
            o = dataclasses.replace(o, inversion="exact" if self.cfg.sampling.inversion == "none" else
                                    self.cfg.sampling.inversion)
        run = o.resolve(self.sampling_defaults)
        source = self.source(x, ids, tokens, torch.ones_like(ids, dtype=torch.bool))
        s = self._edit_guidance(run)
        extra = self._inversion_kwargs(run)
        inv = self._invert_source(source, o, s, run, extra, offsets=run.inversion == "exact")
        return InversionOutput(inv.x_T, inv.trajectory, inv.offsets, run.inversion, run.sampler, run.steps, s,
                               run.null_condition, extra, x, source.conditions, inv.evaluations)

    def _edit_guidance(self, run: Any, style_image: bool = True, attributes: bool = False) -> float:
        """The guidance scale an edit samples with: the run's, or 0 when its condition is its own null."""
        own_null = self.mode.is_own_null(run.null_condition, style_image=style_image, attributes=attributes)
        return 0.0 if own_null else run.guidance_scale

    def _inversion_kwargs(self, run: Any) -> dict[str, Any]:
        """The scheduler settings of an inverting run: the scheduler's own, the regeneration's, x0 clipping."""
        extra = {**self.scheduler_kwargs(run.sampler), **regeneration_kwargs(run.sampler)}
        if run.clip_x0 and run.sampler in ("ddim", "ddpm"):
            extra.update(clip_sample=True, clip_sample_range=float(run.clip_x0))
        return extra

    def _inverted(self, source: "Source", options: SamplingOptions, s: float, run: Any,
                  extra: dict[str, Any]) -> Inversion:
        """The inversion an edit starts from: the one it was given (checked against it), else made now."""
        made = options.made_inversion
        if made is None:
            return self._invert_source(source, options, s, run, extra, offsets=self._records_offsets(source, run))
        return made.for_edit(source, run, s, extra)

    @torch.no_grad()
    def _invert_source(self, source: "Source", options: SamplingOptions, s: float, run: Any,
                       scheduler_kwargs: dict[str, Any], offsets: bool) -> Inversion:
        """The target's first-stage latent, inverted under its own conditions with the run's solver,
        steps and guidance (the edit's own eps, so that ``exact``'s offsets close the edit's pass)."""
        cond = source.conditions
        model_fn = self._guided(cond.mask, run.null_condition, s, options.autocast_dtype)
        z0 = self.first_stage.encode(source.image)
        return invert(model_fn, z0, self.model.prepare(cond, self.cfg.latent_size), self.schedule,
                      sampler=run.sampler, steps=run.steps, exact=offsets,
                      scheduler_kwargs=scheduler_kwargs, progress=options.progress)

    @staticmethod
    def _records_offsets(source: "Source", run: Any) -> bool:
        """Whether exact's offsets can act: not when blending keeps the rest and a fresh source's edited
        parts start from noise (outside, the inverted latent itself is kept; inside, no offset belongs)."""
        return run.inversion == "exact" and not (run.blend and source.fresh)

    def blend_region(self, edited: Tensor, batch: int) -> Tensor:
        """The edited pixels (B, H, W) as the latent-size weight latent blending frees, (B, 1, h, w):
        a latent pixel is free where any edited pixel falls in it (the area resize of the one mask
        pyramid), grown by BLEND_MARGIN latent pixels so that a part's edge is regenerated with it."""
        region = MaskPyramid(edited.float()[:, None], "area").at(self.cfg.latent_size) > 0
        if BLEND_MARGIN:
            k = 2 * BLEND_MARGIN + 1
            region = F.max_pool2d(region.float(), k, stride=1, padding=BLEND_MARGIN) > 0
        region = region.float()
        return region.expand(batch, -1, -1, -1) if region.shape[0] == 1 else region

    def source(self, x: Tensor, ids: Tensor, tokens: Tensor, edited: Tensor, fresh: bool = False) -> "Source":
        """A target face for inversion: its image, its own conditions and the pixels the edit changes."""
        return Source(x, Conditions(mask=self.one_hot(ids), tokens=tokens), edited.bool(), fresh)

    # ------------------------------------------------------------------ attributes
    @property
    def mode(self) -> ConditioningMode:
        """The model's conditioning mode (what it takes; see scadm.conditioning_modes)."""
        return self.model.mode

    @property
    def has_style(self) -> bool:
        """Style tokens from a reference image: the SCA-DM applications (swap, interpolate, mix ...)."""
        return self.mode.takes_style_image

    @property
    def uses_attributes(self) -> bool:
        return self.mode.takes_attributes

    def attribute_vector(self, attributes: Any, batch: int, base: Any = None) -> Tensor | None:
        """Signed attributes (B, 40): +1 / -1, 0 = unknown. `attributes`: a dict {name: 0/1} (applied over
        `base`, default all unknown), a sequence of 40 values in 0/1, or a tensor."""
        if attributes is None and base is None:
            return None
        if not self.uses_attributes:
            raise ValueError(f"this model ({self.mode.name} conditioning) takes no attributes")
        from .labels import ATTRIBUTE_NAMES
        from .models.conditioning import signed_attributes

        def vec(a: Any) -> Tensor:
            t = torch.as_tensor(np.asarray(a, dtype=np.float32))
            if t.shape[-1] != len(ATTRIBUTE_NAMES):
                raise ValueError(f"give {len(ATTRIBUTE_NAMES)} attribute values, got {t.shape[-1]}")
            return signed_attributes(t)

        out = vec(base).expand(batch, -1).clone() if base is not None else torch.zeros(batch, len(ATTRIBUTE_NAMES))
        if isinstance(attributes, Tensor) and attributes.ndim == 2:  # one 0/1 vector per image
            if attributes.shape[0] != batch:
                raise ValueError(f"got attributes for {attributes.shape[0]} images, expected {batch}")
            return signed_attributes(attributes.float()).to(self._execution_device)
        if isinstance(attributes, dict):
            for name, value in attributes.items():
                if name not in ATTRIBUTE_NAMES:
                    raise ValueError(f"unknown attribute {name!r}; valid: {', '.join(ATTRIBUTE_NAMES)}")
                if value not in (0, 1, True, False):
                    raise ValueError(f"attribute {name}={value!r}: use 0 or 1")
                out[:, ATTRIBUTE_NAMES.index(name)] = 1.0 if value else -1.0
        elif attributes is not None:
            out = vec(attributes).expand(batch, -1).clone()
        return out.to(self._execution_device)

    def with_attributes(self, tokens: Tensor, attributes: Tensor | None) -> Tensor:
        """Replace the global (attribute) token rows of style tokens; style rows are untouched."""
        if attributes is None:
            return tokens
        enc = self.model.conditioner.attribute_encoder
        out = tokens.clone()
        out[:, self.token_classes < 0] = enc(attributes).to(out.dtype).expand(out.shape[0], -1, -1)
        return out

    def _need_style(self, what: str) -> None:
        if not self.has_style:
            raise ValueError(f"{what} needs style tokens; this model uses {self.mode.name!r} conditioning")

    # ------------------------------------------------------------------ operations
    @diffusers_call
    def reconstruct(self, image: ImageLike | Sequence[ImageLike], mask: MaskLike | Sequence[MaskLike] | None = None,
                    attributes: Any = None, sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Style and mask from the same face (paper Sec. 4.1). A photo's whole face square is pasted back."""
        self._need_style("reconstruct")
        x, ids, photos = self._batch(image, mask)
        tokens = self.with_attributes(self.style_tokens(x, ids), self.attribute_vector(attributes, ids.shape[0]))
        opts = _sampling(sampling, overrides)
        source = self.source(x, ids, tokens, torch.zeros_like(ids, dtype=torch.bool))
        return self.generate_from_tokens(ids, tokens, opts, source=source).with_photos(photos, [None])

    @diffusers_call
    def swap(self, target: Face | tuple | Sequence, reference: Face | tuple | Sequence,
             parts: Iterable[str | int] | str | None = None, attributes: Any = None,
             sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Total (parts=None) or partial style swap (Sec. 4.2, 4.3): reference style, target mask.

        A target photo gets back its whole face square (total swap) or only the swapped parts.
        """
        self._need_style("swap")
        (tx, tids, photos), (rx, rids, _) = self._faces(target), self._faces(reference)
        classes = self.parts(parts)
        attrs = self.attribute_vector(attributes, tids.shape[0])
        own = self.style_tokens(tx, tids)
        tokens = self.with_attributes(swap_tokens(own, self.style_tokens(rx, rids), classes, self.token_classes), attrs)
        opts = _sampling(sampling, overrides)
        self._warn_absent_parts(tids, classes, "target")
        source = self.source(tx, tids, self.with_attributes(own, attrs), _part_pixels(tids, classes))
        result = self.generate_from_tokens(tids, tokens, opts, source=source)
        result.info["parts"] = classes
        return result.with_photos(photos, classes if _per_image(classes) else [classes])

    @diffusers_call
    def interpolate(self, target: Face | tuple, reference: Face | tuple,
                    parts: Iterable[str | int] | str | None = None,
                    alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), attributes: Any = None,
                    sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Per-part linear interpolation of style tokens, target (alpha 0) to reference (alpha 1) (Fig. 6).

        Returns one image per alpha, all with the same seed (so only the style moves).
        """
        self._need_style("interpolate")
        (tx, tids, photos), (rx, rids, _) = self._faces(target), self._faces(reference)
        if tids.shape[0] != 1:
            raise ValueError("interpolate takes one target and one reference")
        classes = self.parts(parts)
        t_tok, r_tok = self.style_tokens(tx, tids), self.style_tokens(rx, rids)
        tokens = torch.cat([interpolate_tokens(t_tok, r_tok, float(a), classes, self.token_classes) for a in alphas])
        tokens = self.with_attributes(tokens, self.attribute_vector(attributes, len(alphas)))
        opts = _sampling(sampling, overrides)
        base = opts.seed if isinstance(opts.seed, int) else opts.seed[0]
        opts = dataclasses.replace(opts, seed=[base] * len(alphas))
        # one target, inverted once: every alpha starts from its x_T (and follows its trajectory)
        source = self.source(tx, tids, self.with_attributes(t_tok, self.attribute_vector(attributes, 1)),
                              _part_pixels(tids, classes))
        result = self.generate_from_tokens(tids.expand(len(alphas), -1, -1), tokens, opts, source=source)
        result.info.update(alphas=list(map(float, alphas)), parts=classes)
        return result.with_photos(photos, [classes])

    @diffusers_call
    def generate(self, mask: MaskLike | Face | Photo | None = None, n: int = 1, attributes: Any = None,
                 sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Noise-based generation (Sec. 4.4): the empty style, n samples for one mask.

        The null condition is ``null_condition`` if given, else the config's ``noise_null_condition``
        (else its ``null_condition``). With 'style' the empty style *is* the null, so there is
        nothing to guide; with 'full' (Eq. 4 as written: empty style and zero mask, for models
        trained with mask dropout) the samples are guided towards the mask. Token-conditioned models
        (attributes / mask tokens) generate from their conditions, guided by the config's scale; an
        unconditional model needs no mask. `mask` may be a photo (``Face(image)``, ``pipe.photo``):
        its mask is used and each sample's face square is pasted back into it.
        """
        photo = None
        if mask is None:
            if self.mode.has_tokens or self.cfg.unet.spade_parts:
                raise ValueError("this model needs a mask to generate from")
            ids = torch.zeros(n, *self.image_size, dtype=torch.long, device=self._execution_device)
        else:
            ids, photo = self.generation_mask(mask)
        if ids.shape[0] == 1:
            ids = ids.expand(n, -1, -1)
        attrs = self.attribute_vector(attributes, ids.shape[0])
        cond = self.model.conditions(self.one_hot(ids), None, attrs)  # the empty style, for style models
        return self.generate_from_conditions(ids, cond, _sampling(sampling, overrides), style_image=False,
                                             attributes=attrs is not None, noise_based=True).with_photos([photo], [None])

    @diffusers_call
    def mix(self, mask: MaskLike | Face | Photo, reference: Face | tuple | Sequence, parts: Iterable[str | int] | str,
            n: int = 1, attributes: Any = None, sampling: SamplingOptions | None = None,
            **overrides: Any) -> EditResult:
        """Reference style for the named parts, noise (the empty style) for the rest (Fig. 1b).

        A batch of masks (B, H, W) may come with one reference per mask. With a photo as `mask`
        (``Face(image)``, ``pipe.photo``), only the named parts are pasted back into it.
        """
        self._need_style("mix")
        tx = None
        if isinstance(mask, (Face, Photo)) or (isinstance(mask, (list, tuple)) and mask
                                               and isinstance(mask[0], (Face, Photo))):
            tx, ids, photos = self._faces(mask)  # faces: their images can be inverted
        else:
            ids, photo = self.generation_mask(mask)
            photos = [photo]
        rx, rids, _ = self._faces(reference)
        src_x, src_ids = tx, ids  # one face for n images is inverted once (as interpolate's target)
        per_image_attrs = isinstance(attributes, Tensor) and attributes.ndim == 2
        if ids.shape[0] == 1:
            ids = ids.expand(n, -1, -1)
            tx = None if tx is None else tx.expand(n, -1, -1, -1)
            if per_image_attrs:
                src_x, src_ids = tx, ids
        empty = self.style_tokens(None, ids)
        ref = self.style_tokens(rx, rids).expand(ids.shape[0], -1, -1)
        classes = self.parts(parts)
        attrs = self.attribute_vector(attributes, ids.shape[0])
        tokens = self.with_attributes(swap_tokens(empty, ref, classes, self.token_classes), attrs)
        opts = _sampling(sampling, overrides)
        source = None
        if tx is not None:
            own = self.with_attributes(self.style_tokens(src_x, src_ids),
                                       self.attribute_vector(attributes, src_ids.shape[0]))
            source = self.source(src_x, src_ids, own, _part_pixels(src_ids, classes), fresh=True)
        result = self.generate_from_tokens(ids, tokens, opts, source=source)
        return result.with_photos(photos, classes if _per_image(classes) else [classes])

    @diffusers_call
    def edit_mask(self, image: ImageLike | Photo, mask: MaskLike | None = None, new_mask: MaskLike | None = None,
                  attributes: Any = None, sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Keep the face's styles, change its shape: tokens from (image, mask), generated with new_mask.

        For a photo, `new_mask` is an edited mask of the whole photo (the same size; `scadm parse`
        writes one to edit), cut with the face's square; the whole square is pasted back.
        """
        self._need_style("edit_mask")
        if new_mask is None:
            raise ValueError("edit_mask needs new_mask, the edited mask")
        x, ids, photo = self._input(image, mask)
        if photo is not None:
            new_ids = self.load_mask(photo.with_mask(_mask_array(new_mask, self.label_set)))
        else:
            new_ids = self.load_mask(new_mask)
        tokens = self.with_attributes(self.style_tokens(x, ids), self.attribute_vector(attributes, 1))
        opts = _sampling(sampling, overrides)
        source = self.source(x, ids, tokens, ids != new_ids)  # edited: where the class changed
        return self.generate_from_tokens(new_ids, tokens, opts, source=source).with_photos([photo], [None])

    @diffusers_call
    def swap_mask_parts(self, mask: MaskLike | None, donor: MaskLike, parts: Iterable[str | int] | str,
                        image: ImageLike | Photo | None = None, n: int = 1, attributes: Any = None,
                        sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Mask component swapping (multi-conditioning paper Sec. 5): generate from `mask` with the
        donor's `parts` pasted in. With `image` (the face of `mask`) its styles are kept; a photo's
        mask may be left out (parsed), and its whole face square is pasted back."""
        photo = None
        if image is not None:
            x, ids, photo = self._input(image, mask)
        elif mask is None:
            raise ValueError("swap_mask_parts needs a mask, or an image to parse one from")
        else:
            ids, _ = self.generation_mask(mask)
        donor_ids, _ = self.generation_mask(donor)
        mixed = torch.from_numpy(mix_mask_parts(ids[0].cpu().numpy(), donor_ids[0].cpu().numpy(),
                                                self.parts(parts) or [])).long().to(self._execution_device)[None]
        if image is not None:
            self._need_style("swap_mask_parts with an image")
            tokens = self.with_attributes(self.style_tokens(x, ids), self.attribute_vector(attributes, 1))
            opts = _sampling(sampling, overrides)
            source = self.source(x, ids, tokens, ids != mixed)
            result = self.generate_from_tokens(mixed.expand(n, -1, -1), tokens.expand(n, -1, -1), opts, source=source)
        else:
            result = self.generate(mixed, n=n, attributes=attributes, sampling=_sampling(sampling, overrides))
        result.info["mixed_mask"] = mixed[0].cpu().numpy().astype(np.uint8)
        return result.with_photos([photo], [None])

    def _warn_absent_parts(self, ids: Tensor, classes: Any, what: str) -> None:
        """An EditWarning naming the asked-for parts a face does not have (nothing of them can change)."""
        if classes is None:
            return
        for i, (m, row) in enumerate(zip(ids, _rows(classes, ids.shape[0]))):
            absent = [self.label_set.names[c] for c in row if not bool((m == c).any())]
            if absent:
                face = f"{what} {i + 1}" if ids.shape[0] > 1 else f"the {what}"
                warnings.warn(f"{face} has no {', '.join(absent)} in its mask, so "
                              f"{'that part is' if len(absent) == 1 else 'those parts are'} not edited "
                              "(edit its mask to add a part)", EditWarning, stacklevel=3)

    # ------------------------------------------------------------------ batching helpers
    def _batch(self, images: Any, masks: Any) -> tuple[Tensor, Tensor, list[Photo | None]]:
        """Single inputs or equal-length sequences -> (B, 3, H, W), (B, H, W), the photo of each (or None)."""
        if isinstance(images, (list, tuple)) and not isinstance(images, Face):
            if masks is None:
                masks = [None] * len(images)
            if not isinstance(masks, (list, tuple)) or len(masks) != len(images):
                raise ValueError("give as many masks as images")
            items = [self._input(i, m) for i, m in zip(images, masks)]
        else:
            items = [self._input(images, masks)]
        return torch.cat([i[0] for i in items]), torch.cat([i[1] for i in items]), [i[2] for i in items]

    def _faces(self, faces: Any) -> tuple[Tensor, Tensor, list[Photo | None]]:
        if isinstance(faces, (Face, Photo)) or (isinstance(faces, tuple) and len(faces) == 2
                                                and not isinstance(faces[0], (Face, tuple, Photo))):
            items = [self._face(faces)]
        else:
            items = [self._face(f) for f in faces]
        return torch.cat([i[0] for i in items]), torch.cat([i[1] for i in items]), [i[2] for i in items]


def _rows(classes: Any, batch: int) -> list:
    """The class list of each image of a batch (one list for all, or one per image)."""
    rows = classes if _per_image(classes) else [classes] * batch
    if len(rows) != batch:
        raise ValueError(f"got parts for {len(rows)} images, expected {batch}")
    return list(rows)


def _part_pixels(ids: Tensor, classes: Any) -> Tensor:
    """(B, H, W) bool: the pixels of the edited parts (None = every part; one list per image allowed)."""
    if classes is None:
        return torch.ones_like(ids, dtype=torch.bool)
    return torch.stack([torch.isin(m, torch.as_tensor(list(c), dtype=m.dtype, device=m.device))
                        for m, c in zip(ids, _rows(classes, ids.shape[0]))])


def _mask_array(mask: Any, label_set: LabelSet) -> np.ndarray:
    """A mask file, PIL image or array as (H, W) ids (tensors as their first image)."""
    from .photos import read_mask

    if isinstance(mask, (str, Path)):
        return read_mask(checks.input_file(mask, "new_mask", "mask file"), label_set, str(mask))
    if isinstance(mask, Tensor):
        mask = mask.cpu().numpy()
        mask = mask[0] if mask.ndim == 3 else mask
    return read_mask(mask, label_set)


def _parser_path(path: str | Path, name: str) -> Path:
    """A face parser path checked at the door: a BiSeNet file or a compact-parser folder."""
    from .photos import _parser_hint

    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{name} {p}: no such parser file; {_parser_hint()}")
    return checks.input_dir(p, name, "parser folder") if p.is_dir() else checks.input_file(p, name, "parser file")


def export_model(model: SemanticLDM, first_stage: FirstStage, folder: str | Path, face_parser: Any = None) -> None:
    """A self-contained model folder: these networks as an :class:`SCADMPipeline`, written by
    ``save_pretrained``. The files of an older layout at the same place (config.json,
    model.safetensors, autoencoder/, parser/) are removed, so the folder holds one model."""
    import shutil

    folder = Path(folder)
    device = next(model.parameters()).device
    SCADMPipeline.from_networks(model, first_stage, face_parser, device=device).save_pretrained(folder)
    for old in ("config.json", "model.safetensors"):
        (folder / old).unlink(missing_ok=True)
    for old in ("autoencoder", "parser"):
        shutil.rmtree(folder / old, ignore_errors=True)


#: what a model folder of scadm < 0.2 holds besides its other files (training logs, previews, reports)
_LEGACY_FILES = ("config.json", "model.safetensors", "autoencoder", "parser")


def upgrade_folder(old: str | Path, new: str | Path) -> list[str]:
    """Write model folder `old` (any layout scadm wrote) as a diffusers pipeline folder at `new`, which
    must not exist or be empty; `old` is left as it is. The files besides the model (training logs,
    previews, reports) are copied. Every tensor is checked equal after reloading `new`. Returns the
    names copied."""
    import shutil

    from .tempfiles import temp_path

    old, new = checks.model_folder(old, "OLD"), Path(new)
    if new.exists() and (not new.is_dir() or any(new.iterdir())):
        raise ValueError(f"NEW {new} exists and is not an empty folder; give a new folder (nothing is overwritten)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LegacyFolderNote)
        pipe = SCADMPipeline.from_pretrained(old, device="cpu")
    tmp = temp_path(new)
    pipe.save_pretrained(tmp)
    written = {p.name for p in tmp.iterdir()}
    copied = []
    for item in sorted(old.iterdir()):
        if item.name in _LEGACY_FILES or item.name in written or item.name.startswith("."):
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        copied.append(item.name)
    again = SCADMPipeline.from_pretrained(tmp, device="cpu")
    for name in ("unet", "condition_encoder", "vae", "face_parser"):
        a, b = getattr(pipe, name), getattr(again, name)
        if (a is None) != (b is None) or (a is not None and any(
                not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))):
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"upgrade-model: {name} did not reload equal from {tmp}; nothing was written")
    if new.exists():
        new.rmdir()
    tmp.replace(new)
    return copied

