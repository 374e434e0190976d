"""SCADMPipeline: the editing and generation API (SCA-DM paper Sec. 4, Fig. 1, 4, 5, 6, 7), a
diffusers ``DiffusionPipeline``.

Every application is a short function on the same steps, in one direction:

    inputs      pipe.inputs (FaceInputs): files, arrays, photos -> images and masks at the model's size
    conditions  style tokens of a face (and attributes); token edits (tokens.py) make the edit's tokens
    plan        plan_edit (plan.py): what is inverted, what is kept, where noise starts
    sampling    the plan carried out: x_T, the solver's steps, blending, exact's offsets
    decode      the first stage; photos pasted back (outputs.py)

    reconstruct   tokens of (image, mask), generated with mask
    swap          reference tokens for all classes (total) or the named parts (partial),
                  pooled with the reference's own mask; generated with the target's mask
    interpolate   per-part linear blend of target and reference tokens, one image per alpha
    generate      the empty style (style encoder on a zero image), noise decides the style
    mix           reference tokens for the named parts, empty style for the rest
    edit_mask     the face's own tokens, generated with a new (user-edited) mask
    swap_mask_parts  a mask with a donor's parts pasted in (multi-conditioning paper Sec. 5)

Randomness is per image: image i of a call uses ``seed + i`` (or ``seeds[i]``, or its own
``generator``), so a batch gives the same images as one-by-one calls.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from torch import Tensor

from .. import checks
from ..conditioning_modes import ConditioningMode
from ..conditions import Conditions, cat_conditions, conditions_batch, repeat_conditions
from ..config import SCHEMA_VERSION, ModelConfig, SamplingConfig, SamplingOptions, from_dict, to_dict
from ..diffusion import (ClassifierFreeGuidance, FoldedGuidance, Inversion, NoiseSchedule, invert, regeneration_kwargs, sample,
                         sample_virtual)
from ..diffusion.inversion import EXACT
from ..diffusion.objective import randn
from ..diffusion.sampling import NonFiniteSampleError
from ..diffusion.schedule import sampler_of
from ..labels import LabelSet
from ..models.autoencoder import FirstStage
from ..models.conditioning import ConditionEncoder
from ..models.ldm import PIPELINE_INDEX, SemanticLDM
from ..models.unet import SemanticUNet
from ..photos import OWN_PARSER, Framing, Photo
from .calls import CallOptions, current_call, diffusers_call, sampling_options
from .folders import LegacyFolderNote, default_model_folder
from .inputs import Face, FaceInputs, ImageLike, MaskLike, attribute_vector
from .outputs import EditResult, InversionOutput, as_output_type
from .plan import EditPlan, Source, plan_edit
from .tokens import interpolate_tokens, mix_mask_parts, mix_tokens, part_pixels, per_image, swap_tokens


def _device(device: str | torch.device | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


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
                 sampling: dict | None = None, autoencoder: Any = None, domain: str | None = None,
                 distilled: dict | None = None) -> None:
        super().__init__()
        settings = dict(name=name, schema_version=schema_version, labels=labels, image_size=list(image_size),
                        latent_channels=latent_channels, latent_downsample=latent_downsample,
                        latent_scale=latent_scale, schedule=schedule, sampling=sampling, autoencoder=autoencoder,
                        domain=domain, distilled=distilled)
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
        self.parser_spec, self.model_folder, self._photo_parser = None, None, None
        self._unet_rows = 0  # UNet evaluations of the call in progress (rows of the batches the unet saw)
        self.inputs = FaceInputs(self.cfg.image_size, self.label_set, device=lambda: self._execution_device,
                                 parser=lambda: self.photo_parser)

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

            from ..models import face_parser as _  # noqa: F401 - diffusers loads only classes of imported modules

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
        pipe.parser_spec, pipe.model_folder = parser, folder
        pipe.inputs.framing, pipe.inputs.model_folder = framing, folder
        return pipe

    @classmethod
    def from_single_file(cls, checkpoint: str | Path, weights: str = "ema", first_stage: str | Path | None = None,
                         config: str | Path = "paper-256", device: str | torch.device | None = None,
                         torch_dtype: torch.dtype | None = None, parser: Any = None) -> "SCADMPipeline":
        """The SCA-DM authors' Lightning checkpoint (``epoch=000235.ckpt``) as a pipeline, read as
        ``scadm convert sca-dm`` reads it (memory-mapped, every key and shape checked, the same
        one-line errors) without writing a folder; ``pipe.conversion`` is the report (what was
        taken and dropped). diffusers' ``FromSingleFileMixin`` cannot load this UNet, so this is the
        project's own loader under the conventional name. `weights`, `first_stage` and `config` are
        :func:`scadm.convert.scadm_networks`'s; ``save_pretrained`` writes what ``scadm convert`` does.
        """
        from ..convert import scadm_networks

        checks.input_file(checkpoint, "checkpoint", "checkpoint file")
        model, first, report = scadm_networks(checkpoint, weights, first_stage, config)
        pipe = cls.from_networks(model, first, device=device)
        if torch_dtype is not None:
            pipe.to(dtype=torch_dtype)
        pipe.parser_spec, pipe.conversion = parser, report
        return pipe

    @classmethod
    def _from_legacy(cls, folder: Path) -> "SCADMPipeline":
        from ..models.face_parser import BiSeNetParser, load_parser

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
        """Write the pipeline in diffusers' layout: ``model_index.json``, and one folder per component
        (``config.json`` + ``diffusion_pytorch_model.safetensors``; ``scheduler/``). Tensors are
        written one at a time (a memory-mapped checkpoint is never copied whole), and the configs
        carry no local path. The model's default sampler written is the ``scheduler``'s."""
        from ..weights import write_safetensors

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.register_to_config(sampling=to_dict(self.sampling_defaults))
        for name in ("unet", "condition_encoder", "vae", "face_parser"):
            module = getattr(self, name)
            if module is None:
                continue
            module.save_config(folder / name)
            _without_local_path(folder / name / "config.json")
            write_safetensors(folder / name / "diffusion_pytorch_model.safetensors", module.state_dict(),
                              {"format": "pt"})
        self.scheduler.save_pretrained(folder / "scheduler")
        self.save_config(folder)
        _without_local_path(folder / PIPELINE_INDEX)

    # ------------------------------------------------------------------ photos
    @property
    def photo_parser(self) -> Any:
        """The :class:`~scadm.photos.FaceParser` for photos without a mask, or None. One rule: the
        ``parser`` given to the pipeline (``--parser``), else ``$SCADM_PARSER``, else the pipeline's own
        ``face_parser`` unless it knows only scadm's synthetic faces (the bundled model's), else none."""
        if self._photo_parser is None:
            from ..photos import load_face_parser, resolve_parser

            found = resolve_parser(self.parser_spec, self.model_folder)
            if found is not None:
                spec, where = found
                if where == OWN_PARSER and self.face_parser is not None:
                    spec = self.face_parser  # the component already loaded
                name = f"{spec} ({where})" if isinstance(spec, (str, Path)) else where
                side = max(self.image_size)
                self._photo_parser = load_face_parser(spec, self.label_set, side, self._execution_device, name)
        return self._photo_parser

    # ------------------------------------------------------------------ what the model is
    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.cfg.image_size)

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

    @property
    def token_classes(self) -> Tensor:
        return self.model.unet.token_classes

    def _need_style(self, what: str) -> None:
        if not self.has_style:
            raise ValueError(f"{what} needs style tokens; this model uses {self.mode.name!r} conditioning")

    # ------------------------------------------------------------------ conditions
    def one_hot(self, ids: Tensor) -> Tensor:
        return F.one_hot(ids, self.label_set.num_classes).permute(0, 3, 1, 2).float()

    @torch.no_grad()
    def style_tokens(self, image: Tensor | None, ids: Tensor) -> Tensor:
        """E_s(image, mask) (image None = the empty style)."""
        return self.model.conditions(self.one_hot(ids), image).tokens

    def attribute_vector(self, attributes: Any, batch: int, base: Any = None) -> Tensor | None:
        """Signed attributes (B, 40) on the pipeline's device, or None (see :func:`~scadm.pipeline.inputs.attribute_vector`)."""
        if attributes is None and base is None:
            return None
        if not self.uses_attributes:
            raise ValueError(f"this model ({self.mode.name} conditioning) takes no attributes")
        return attribute_vector(attributes, batch, base).to(self._execution_device)

    def with_attributes(self, tokens: Tensor, attributes: Tensor | None) -> Tensor:
        """Replace the global (attribute) token rows of style tokens; style rows are untouched."""
        if attributes is None:
            return tokens
        enc = self.model.conditioner.attribute_encoder
        out = tokens.clone()
        out[:, self.token_classes < 0] = enc(attributes).to(out.dtype).expand(out.shape[0], -1, -1)
        return out

    def face_tokens(self, x: Tensor, ids: Tensor, attributes: Any = None) -> Tensor:
        """A face's own tokens: its style from its image and mask, with the given attributes."""
        return self.with_attributes(self.style_tokens(x, ids), self.attribute_vector(attributes, ids.shape[0]))

    def source(self, x: Tensor, ids: Tensor, tokens: Tensor, edited: Tensor, fresh: bool = False) -> Source:
        """A target face for inversion: its image, its own conditions and the pixels the edit changes."""
        return Source(x, Conditions(mask=self.one_hot(ids), tokens=tokens), edited.bool(), fresh)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate_from_tokens(self, ids: Tensor, tokens: Tensor | None, options: SamplingOptions | None = None,
                             *, style_image: bool = True, attributes: bool = False,
                             noise_based: bool = False, source: Source | None = None) -> EditResult:
        """Sample images for generation masks `ids` (B, H, W) and style `tokens` (B, N, D)."""
        return self.generate_from_conditions(ids, Conditions(mask=self.one_hot(ids), tokens=tokens), options,
                                             style_image=style_image, attributes=attributes, noise_based=noise_based,
                                             source=source)

    @torch.no_grad()
    def generate_from_conditions(self, ids: Tensor, cond: Conditions, options: SamplingOptions | None = None,
                                 *, style_image: bool = True, attributes: bool = False,
                                 noise_based: bool = False, source: Source | None = None) -> EditResult:
        """Sample images for masks `ids` (B, H, W) and encoded conditions, guided against the null condition.

        `style_image` / `attributes`: whether `cond` was encoded from a style image / from attributes
        (when neither, it may be its own null, and guidance is skipped: see
        :meth:`ConditioningMode.is_own_null`); `noise_based`: the null condition defaults to the
        model's noise-based one. `source`: the target face, for ``options.inversion`` / ``blend``.
        """
        o, call = options or SamplingOptions(), current_call()
        self._unet_rows = 0  # UNet evaluations of this call, in images (a guided step of one image: 2)
        run = o.resolve(self.sampling_defaults, noise_based=noise_based, face=source is not None)
        s, b = self._edit_guidance(run, style_image, attributes), ids.shape[0]
        plan = plan_edit(run, source, b, self.cfg.latent_size)
        seeds = o.seeds(b) if call.generator is None else None
        info = {"seeds": seeds, "guidance_scale": s, "null_condition": run.null_condition, "sampler": run.sampler,
                "steps": run.steps, "inversion": plan.inversion, "blend": run.blend}
        if plan.skipped:
            info["inversion_skipped"] = plan.skipped
        if plan.start == "first_stage":
            z = self.first_stage.encode(source.image)
            z = z.expand(b, *z.shape[1:]) if z.shape[0] == 1 else z
        else:
            gens = call.generator if seeds is None else [torch.Generator(self._execution_device).manual_seed(int(x))
                                                          for x in seeds]
            z = self._denoise(cond, o, run, s, plan, source, b, gens, call, info)
        info["unet_evaluations"] = self._unet_rows / b  # per image, an inversion made for this call included
        masks = [m.cpu().numpy().astype(np.uint8) for m in ids]
        if call.output_type == "latent":
            return EditResult(z.float(), None, masks, info)
        x = self.first_stage.decode(z).float().clamp(-1, 1)
        return EditResult(as_output_type(x, call.output_type), x, masks, info)

    def _denoise(self, cond: Conditions, o: SamplingOptions, run: Any, s: float, plan: EditPlan,
                 source: Source | None, b: int, gens: Any, call: CallOptions, info: dict) -> Tensor:
        """The plan's sampling: from noise, or from the inverted target (blended, with offsets), or beside
        the target's noised latent (virtual inversion)."""
        if plan.start == "virtual":
            return self._virtual(cond, o, run, s, plan, source, b, gens)
        x_T = offsets = keep = None
        extra = self._inversion_kwargs(run) if plan.start == "inversion" else self._sampling_kwargs(run)
        try:
            if plan.start == "inversion":
                reused = o.made_inversion is not None and o.made_inversion.edits > 0
                inv = self._inverted(source, o, s, run, extra, plan.offsets).expand(b)
                info.update(inversion_solver=run.sampler, inversion_evaluations=0 if reused else inv.evaluations,
                            inversion_reused=reused)
                x_T, offsets = inv.x_T, inv.offsets
                keep = None if plan.region is None else (plan.region, inv.trajectory)
                if plan.fresh is not None:  # these pixels start from the seed's noise, without offsets
                    noise = randn(tuple(x_T.shape), generator=gens, device=self._execution_device, dtype=x_T.dtype)
                    x_T = torch.lerp(x_T, noise, plan.fresh)
                    offsets = None if offsets is None else [d * (1 - plan.fresh) for d in offsets]
            return sample(self._guided(cond.mask, run.null_condition, s, o.autocast_dtype),
                          (b, self.cfg.latent_channels, *self.cfg.latent_size), self.model.prepare(cond, self.cfg.latent_size),
                          self.schedule, sampler=run.sampler, steps=run.steps, eta=run.eta, x_T=x_T, keep=keep,
                          offsets=offsets, generator=gens, device=self._execution_device, progress=o.progress,
                          scheduler_kwargs=extra or None, callback=self._step_end(call))
        except NonFiniteSampleError as exc:
            raise NonFiniteSampleError(f"{exc}, guidance s = {s:g} ({run.null_condition} null), clip_x0 {run.clip_x0}; "
                                       "nothing was written: lower the guidance scale, or set the model config's "
                                       "sampling.clip_x0 (DDIM and DDPM)") from None

    def _virtual(self, cond: Conditions, o: SamplingOptions, run: Any, s: float, plan: EditPlan, source: Source,
                 b: int, gens: Any) -> Tensor:
        """Virtual inversion: the target's noised latent and the edit, one doubled batch per step."""
        times = b // source.image.shape[0]
        z0 = self.first_stage.encode(source.image)
        z0 = z0.repeat(times, 1, 1, 1) if times > 1 else z0
        both = cat_conditions(repeat_conditions(source.conditions, times), cond)
        model_fn = self._guided(both.mask, run.null_condition, s, o.autocast_dtype)
        try:
            return sample_virtual(model_fn, z0, self.model.prepare(both, self.cfg.latent_size), self.schedule,
                                  steps=run.steps, region=plan.region, fresh=plan.fresh, generator=gens,
                                  progress=o.progress, sampler=run.sampler)
        except NonFiniteSampleError as exc:
            raise NonFiniteSampleError(f"{exc}, guidance s = {s:g} ({run.null_condition} null); nothing was written: "
                                       "lower the guidance scale") from None

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

    def _guided(self, mask: Tensor, null_condition: str, s: float, low: Any) -> ClassifierFreeGuidance | FoldedGuidance:
        """The denoiser guided at scale `s` against the null condition of `mask` (built only when s != 0),
        in `low` autocast precision (None: float32); guidance and the solver stay in float32."""
        latent = self.cfg.latent_size

        def null(cond: Any) -> Any:  # for a condition of batch k x B (several steps in one batch): repeated k times
            prepared = self.model.prepare(self.model.conditioner.null(mask, null_condition), latent)
            times = (conditions_batch(cond) or mask.shape[0]) // mask.shape[0]
            return repeat_conditions(prepared, times)

        def net(x: Tensor, t: Tensor, c: Any, unet: Any = self.model.unet, guidance: float | None = None) -> Tensor:
            # the unet runs in its own dtype (a bf16 pipeline's), under autocast when `low` asks; the solver in float32
            self._unet_rows += x.shape[0]
            with torch.autocast(self._execution_device.type, dtype=low, enabled=low is not None):
                return (unet(x, t, c) if guidance is None else unet(x, t, c, guidance=guidance)).float()

        if self.model.unet.guidance_embed is not None:  # a distilled student: s is its input, one pass a step
            return FoldedGuidance(net, s)
        return ClassifierFreeGuidance(net, null, s)

    # ------------------------------------------------------------------ inversion
    @diffusers_call
    @torch.no_grad()
    def invert(self, image: ImageLike | Face | Photo | Sequence, mask: MaskLike | None = None, attributes: Any = None,
               sampling: SamplingOptions | None = None, **overrides: Any) -> InversionOutput:
        """Invert a face once, for any number of edits of it (``inversion=`` of every edit of a target).

        The face's first-stage latent is inverted under its own conditions with the call's solver,
        steps and guidance (the model's defaults unless given; ``inversion`` "exact", the default,
        or "ddim"), as an edit would invert it. The result holds the latents at every level, the
        exact offsets, and the settings and conditions it is valid for: an edit of another face, or
        with other steps, solver, guidance or null condition, is refused in one line.
        """
        self._need_style("invert")
        x, ids, _ = self.inputs.faces(image) if isinstance(image, (Face, Photo, tuple)) else self.inputs.batch(image, mask)
        o = sampling_options(sampling, overrides)
        if o.inversion in ("none", "virtual") or o.made_inversion is not None:
            raise ValueError(f"invert: inversion {o.inversion!r} makes nothing to keep ('virtual' has no inversion "
                             "pass: give it to the edit itself); use 'exact' (the default) or 'ddim'")
        if o.inversion is None:  # the model's own, unless it has nothing to keep (none, virtual): exact
            default = self.cfg.sampling.inversion
            o = dataclasses.replace(o, inversion="exact" if default in ("none", "virtual") else default)
        run = o.resolve(self.sampling_defaults)
        source = self.source(x, ids, self.face_tokens(x, ids, attributes), torch.ones_like(ids, dtype=torch.bool))
        s, extra = self._edit_guidance(run), self._inversion_kwargs(run)
        inv = self._invert_source(source, o, s, run, extra, offsets=run.inversion in EXACT)
        return InversionOutput(inv.x_T, inv.trajectory, inv.offsets, run.inversion, run.sampler, run.steps, s,
                               run.null_condition, extra, x, source.conditions, inv.evaluations)

    def _edit_guidance(self, run: Any, style_image: bool = True, attributes: bool = False) -> float:
        """The guidance scale an edit samples with: the run's, or 0 when its condition is its own null."""
        own_null = self.mode.is_own_null(run.null_condition, style_image=style_image, attributes=attributes)
        return 0.0 if own_null else run.guidance_scale

    def _sampling_kwargs(self, run: Any) -> dict[str, Any]:
        """The scheduler settings of a run: the scheduler's own, and x0 clipping for DDIM and DDPM."""
        extra = self.scheduler_kwargs(run.sampler)
        if run.clip_x0 and run.sampler in ("ddim", "ddpm"):
            extra.update(clip_sample=True, clip_sample_range=float(run.clip_x0))
        return extra

    def _inversion_kwargs(self, run: Any) -> dict[str, Any]:
        """The scheduler settings of an inverting run: a run's, and the regeneration's."""
        return {**self._sampling_kwargs(run), **regeneration_kwargs(run.sampler)}

    def _inverted(self, source: Source, options: SamplingOptions, s: float, run: Any, extra: dict[str, Any],
                  offsets: bool) -> Inversion:
        """The inversion an edit starts from: the one it was given (checked against it), else made now."""
        made = options.made_inversion
        if made is None:
            return self._invert_source(source, options, s, run, extra, offsets)
        return made.for_edit(source, run, s, extra)

    @torch.no_grad()
    def _invert_source(self, source: Source, options: SamplingOptions, s: float, run: Any,
                       scheduler_kwargs: dict[str, Any], offsets: bool) -> Inversion:
        """The target's first-stage latent, inverted under its own conditions with the run's solver,
        steps and guidance (the edit's own eps, so that ``exact``'s offsets close the edit's pass)."""
        cond = source.conditions
        model_fn = self._guided(cond.mask, run.null_condition, s, options.autocast_dtype)
        unguided = self._guided(cond.mask, run.null_condition, 0.0, options.autocast_dtype) \
            if run.inversion == "exact-unguided" else None
        z0 = self.first_stage.encode(source.image)
        return invert(model_fn, z0, self.model.prepare(cond, self.cfg.latent_size), self.schedule,
                      sampler=run.sampler, steps=run.steps, exact=offsets, inversion_fn=unguided,
                      scheduler_kwargs=scheduler_kwargs, progress=options.progress)

    # ------------------------------------------------------------------ applications
    def _edit(self, ids: Tensor, tokens: Tensor, sampling: SamplingOptions | None, overrides: dict, source: Source,
              photos: list, edited: Any) -> EditResult:
        """Sample an edit of `source` and say which photo each image belongs to and what it edited."""
        result = self.generate_from_tokens(ids, tokens, sampling_options(sampling, overrides), source=source)
        return result.with_photos(photos, edited if per_image(edited) else [edited])

    @diffusers_call
    def reconstruct(self, image: ImageLike | Sequence[ImageLike], mask: MaskLike | Sequence[MaskLike] | None = None,
                    attributes: Any = None, sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Style and mask from the same face (paper Sec. 4.1). A photo's whole face square is pasted back."""
        self._need_style("reconstruct")
        x, ids, photos = self.inputs.batch(image, mask)
        tokens = self.face_tokens(x, ids, attributes)
        return self._edit(ids, tokens, sampling, overrides, self.source(x, ids, tokens, ids < 0), photos, None)

    @diffusers_call
    def swap(self, target: Face | tuple | Sequence, reference: Face | tuple | Sequence,
             parts: Iterable[str | int] | str | None = None, attributes: Any = None,
             sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Total (parts=None) or partial style swap (Sec. 4.2, 4.3): reference style, target mask.

        A target photo gets back its whole face square (total swap) or only the swapped parts.
        """
        self._need_style("swap")
        (tx, tids, photos), (rx, rids, _) = self.inputs.faces(target), self.inputs.faces(reference)
        classes = self.inputs.parts(parts)
        self.inputs.warn_absent_parts(tids, classes, "target")
        own = self.face_tokens(tx, tids, attributes)
        tokens = self.with_attributes(swap_tokens(own, self.style_tokens(rx, rids), classes, self.token_classes),
                                      self.attribute_vector(attributes, tids.shape[0]))
        source = self.source(tx, tids, own, part_pixels(tids, classes))
        result = self._edit(tids, tokens, sampling, overrides, source, photos, classes)
        result.info["parts"] = classes
        return result

    @diffusers_call
    def interpolate(self, target: Face | tuple, reference: Face | tuple,
                    parts: Iterable[str | int] | str | None = None,
                    alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), attributes: Any = None,
                    sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Per-part linear interpolation of style tokens, target (alpha 0) to reference (alpha 1) (Fig. 6).

        Returns one image per alpha, all with the same seed (so only the style moves); the target is
        inverted once and every alpha starts from it.
        """
        self._need_style("interpolate")
        (tx, tids, photos), (rx, rids, _) = self.inputs.faces(target), self.inputs.faces(reference)
        if tids.shape[0] != 1:
            raise ValueError("interpolate takes one target and one reference")
        classes = self.inputs.parts(parts)
        own, ref = self.face_tokens(tx, tids, attributes), self.face_tokens(rx, rids, attributes)
        tokens = torch.cat([interpolate_tokens(own, ref, float(a), classes, self.token_classes) for a in alphas])
        o = sampling_options(sampling, overrides)
        o = dataclasses.replace(o, seed=[o.seed if isinstance(o.seed, int) else o.seed[0]] * len(alphas))
        source = self.source(tx, tids, own, part_pixels(tids, classes))
        result = self._edit(tids.expand(len(alphas), -1, -1), tokens, o, {}, source, photos, classes)
        result.info.update(alphas=list(map(float, alphas)), parts=classes)
        return result

    @diffusers_call
    def generate(self, mask: MaskLike | Face | Photo | None = None, n: int = 1, attributes: Any = None,
                 sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Noise-based generation (Sec. 4.4): the empty style, n samples for one mask.

        The null condition is ``null_condition`` if given, else the config's ``noise_null_condition``
        (else its ``null_condition``). With 'style' the empty style *is* the null, so there is
        nothing to guide; with 'full' (Eq. 4 as written: empty style and zero mask, for models
        trained with mask dropout) the samples are guided towards the mask. Token-conditioned models
        (attributes / mask tokens) generate from their conditions, guided by the config's scale; an
        unconditional model needs no mask. `mask` may be a photo (``Face(image)``, ``pipe.inputs.photo``):
        its mask is used and each sample's face square is pasted back into it.
        """
        photo = None
        if mask is None:
            if self.mode.has_tokens or self.cfg.unet.spade_parts:
                raise ValueError("this model needs a mask to generate from")
            ids = torch.zeros(n, *self.image_size, dtype=torch.long, device=self._execution_device)
        else:
            ids, photo = self.inputs.generation_mask(mask)
        ids = ids.expand(n, -1, -1) if ids.shape[0] == 1 else ids
        attrs = self.attribute_vector(attributes, ids.shape[0])
        cond = self.model.conditions(self.one_hot(ids), None, attrs)  # the empty style, for style models
        return self.generate_from_conditions(ids, cond, sampling_options(sampling, overrides), style_image=False,
                                             attributes=attrs is not None, noise_based=True).with_photos([photo], [None])

    @diffusers_call
    def mix(self, mask: MaskLike | Face | Photo, reference: Face | tuple | Sequence, parts: Iterable[str | int] | str,
            n: int = 1, attributes: Any = None, sampling: SamplingOptions | None = None,
            **overrides: Any) -> EditResult:
        """Reference style for the named parts, noise (the empty style) for the rest (Fig. 1b).

        A batch of masks (B, H, W) may come with one reference per mask. With a face as `mask`
        (``Face(image)``, a Photo) the rest of the face is kept (when inverting) and only the named
        parts are pasted back into a photo; one face for n images is inverted once.
        """
        self._need_style("mix")
        faces = isinstance(mask, (Face, Photo)) or (isinstance(mask, (list, tuple)) and mask
                                                    and isinstance(mask[0], (Face, Photo)))
        if faces:
            tx, ids, photos = self.inputs.faces(mask)
        else:
            ids, photo = self.inputs.generation_mask(mask)
            tx, photos = None, [photo]
        rx, rids, _ = self.inputs.faces(reference)
        classes = self.inputs.parts(parts)
        batch = ids.expand(n, -1, -1) if ids.shape[0] == 1 else ids
        tokens = self.with_attributes(mix_tokens(self.style_tokens(None, batch), self.style_tokens(rx, rids), classes,
                                                 self.token_classes), self.attribute_vector(attributes, batch.shape[0]))
        source = None
        if tx is not None:
            one = not (isinstance(attributes, Tensor) and attributes.ndim == 2)  # else: one face per image
            x, own_ids = (tx, ids) if one else (tx.expand(batch.shape[0], -1, -1, -1), batch)
            source = self.source(x, own_ids, self.face_tokens(x, own_ids, attributes), part_pixels(own_ids, classes),
                                 fresh=True)
        result = self.generate_from_tokens(batch, tokens, sampling_options(sampling, overrides), source=source)
        return result.with_photos(photos, classes if per_image(classes) else [classes])

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
        x, ids, photos = self.inputs.image_and_mask(image, mask)
        new_ids = self.inputs.new_mask(new_mask, photos[0])
        tokens = self.face_tokens(x, ids, attributes)
        source = self.source(x, ids, tokens, ids != new_ids)  # edited: where the class changed
        return self._edit(new_ids, tokens, sampling, overrides, source, photos, None)

    @diffusers_call
    def swap_mask_parts(self, mask: MaskLike | None, donor: MaskLike, parts: Iterable[str | int] | str,
                        image: ImageLike | Photo | None = None, n: int = 1, attributes: Any = None,
                        sampling: SamplingOptions | None = None, **overrides: Any) -> EditResult:
        """Mask component swapping (multi-conditioning paper Sec. 5): generate from `mask` with the
        donor's `parts` pasted in. With `image` (the face of `mask`) its styles are kept; a photo's
        mask may be left out (parsed), and its whole face square is pasted back."""
        if image is None and mask is None:
            raise ValueError("swap_mask_parts needs a mask, or an image to parse one from")
        x, ids, photos = self.inputs.image_and_mask(image, mask) if image is not None else (
            None, self.inputs.generation_mask(mask)[0], [None])
        donor_ids, _ = self.inputs.generation_mask(donor)
        mixed = torch.from_numpy(mix_mask_parts(ids[0].cpu().numpy(), donor_ids[0].cpu().numpy(),
                                                self.inputs.parts(parts) or [])).long().to(self._execution_device)[None]
        if image is None:
            result = self.generate(mixed, n=n, attributes=attributes, sampling=sampling_options(sampling, overrides))
        else:
            self._need_style("swap_mask_parts with an image")
            tokens = self.face_tokens(x, ids, attributes)
            source = self.source(x, ids, tokens, ids != mixed)
            result = self._edit(mixed.expand(n, -1, -1), tokens.expand(n, -1, -1), sampling, overrides, source,
                                photos, None)
        result.info["mixed_mask"] = mixed[0].cpu().numpy().astype(np.uint8)
        return result.with_photos(photos, [None])


def _parser_path(path: str | Path, name: str) -> Path:
    """A face parser path checked at the door: a BiSeNet file or a compact-parser folder."""
    from ..photos import _parser_hint

    p = checks.fetched(Path(path).expanduser(), name)  # "parser": the one `scadm fetch parser` downloaded
    if not p.exists():
        raise FileNotFoundError(f"{name} {p}: no such parser file; {_parser_hint()}")
    return checks.input_dir(p, name, "parser folder") if p.is_dir() else checks.input_file(p, name, "parser file")


def _without_local_path(config: Path) -> None:
    """A saved config without the folder diffusers records a model was loaded from."""
    cfg = json.loads(config.read_text())
    if cfg.pop("_name_or_path", None) is not None:
        config.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

