"""Foreign checkpoints -> scadm model folders.

Two sources (docs/authors-model.md says where they come from and what the result computes):

- **the SCA-DM authors' checkpoint** (PyTorch Lightning, CompVis layout: ``last.ckpt`` or
  ``epoch=000235.ckpt``) -> a model folder every ``--model`` accepts (:func:`convert_scadm`), or the
  networks themselves (:func:`scadm_networks`, what ``SCADMPipeline.from_single_file`` loads).
  ``model.diffusion_model.*`` (raw) or the dot-free ``model_ema.diffusion_model*`` (EMA) become
  the UNet, ``cond_stage_model.*`` the style encoder, ``first_stage_model.*`` the first stage.
- **LDM's VQ-f4** first stage (``models/first_stage_models/vq-f4/model.ckpt``, taming layout)
  -> a diffusers ``VQModel`` folder (:func:`convert_vq`), loaded strictly.

Reading never executes pickled code: ``torch.load(weights_only=True)``, memory-mapped (a 4 GB
checkpoint is read tensor by tensor as it is written out, never held whole in memory). When
Lightning's extra entries (hyper-parameters as OmegaConf objects, callback states) refuse to load
that way, an allow-list unpickler admits only tensors and plain containers and stands an inert
placeholder in for every other object.

Everything is checked before anything is written (architecture, shapes, noise schedule, first
stage); the output goes to a temporary folder renamed into place at the end, and an existing,
non-empty output folder is refused: nothing is lost or overwritten.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import struct
import types
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .conditioning_modes import MODES, get_mode
from .config import AutoencoderConfig, ModelConfig, SamplingConfig, load_recipe, to_dict
from .tempfiles import remove_stale, temp_path
from .weights import write_safetensors  # noqa: F401 - written here, and by scadm.pipeline

__all__ = [
    "RELEASED_FID_SAMPLING", "ConversionReport", "read_checkpoint", "convert_scadm", "scadm_networks", "convert_vq",
    "released_style_key", "taming_to_diffusers_key",
]

#: what the authors' FID script (generate_fid_samples.py) samples with: DDIMSampler, 200 steps,
#: eta 0, --scale 1.0 (the released w = 1, i.e. s = w - 1 = 0: unguided); when guided, its null is
#: all-zero tokens with a zero mask ("zero"). A converted model's config defaults to these.
RELEASED_FID_SAMPLING = SamplingConfig(sampler="ddim", steps=200, eta=0.0, guidance_scale=0.0,
                                       null_condition="zero", noise_null_condition=None, clip_x0=None)

_UNET, _EMA, _STYLE, _FIRST = "model.diffusion_model.", "model_ema.", "cond_stage_model.", "first_stage_model."


# ---------------------------------------------------------------------------
# Reading a checkpoint without executing it
# ---------------------------------------------------------------------------
class _Opaque:
    """Stands in for an object of a class the allow-list does not admit: built from nothing, inert."""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Opaque":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:  # dict subclasses (OmegaConf's DictConfig ...)
        pass

    def append(self, value: Any) -> None:  # list subclasses
        pass

    def extend(self, values: Any) -> None:
        pass


def _allowed_globals() -> dict[str, Any]:
    """What weights_only=True admits (tensors, storages, dtypes, plain containers), by 'module.name'."""
    from torch import _weights_only_unpickler as wou

    return dict(wou._get_allowed_globals())


class _AllowListUnpickler(pickle.Unpickler):
    """Admits the weights_only globals; every other class or function becomes an inert placeholder."""

    _allowed: dict[str, Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if _AllowListUnpickler._allowed is None:
            _AllowListUnpickler._allowed = _allowed_globals()
        found = _AllowListUnpickler._allowed.get(f"{module}.{name}")
        if found is not None:
            return found
        return type(name, (_Opaque,), {"__module__": "scadm.convert.opaque", "source": f"{module}.{name}"})


def _allow_list_load(file: Any, **kwargs: Any) -> Any:
    return _AllowListUnpickler(file, **kwargs).load()


#: a pickle module for torch.load that never imports or calls anything outside the allow-list
_ALLOW_LIST_PICKLE = types.SimpleNamespace(__name__="scadm_allow_list_pickle", Unpickler=_AllowListUnpickler,
                                           load=_allow_list_load)


def _load_object(path: Path, what: str) -> Any:
    """torch.load of `path`, weights only, memory-mapped when the file is a zip archive."""
    with open(path, "rb") as f:
        head = f.read(4)
    is_zip = zipfile.is_zipfile(path)
    if head == b"PK\x03\x04" and not is_zip:
        raise ValueError(f"{path}: truncated (a zip archive without its end); expected {what}, complete")
    if not is_zip and head[:1] != b"\x80":  # neither torch.save's zip archive nor its older pickle format
        raise ValueError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle); expected {what}")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
        except pickle.UnpicklingError as exc:
            if "Weights only load failed" not in str(exc):
                raise
        # Lightning's extras (OmegaConf hyper-parameters, callback states): admit tensors and plain containers only
        return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip, pickle_module=_ALLOW_LIST_PICKLE)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, OSError,
            IndexError, KeyError, struct.error) as exc:
        reason = " ".join(str(exc).split())[:160] or exc.__class__.__name__
        raise ValueError(f"{path}: not a readable PyTorch checkpoint, truncated or damaged ({reason}); expected {what}") from None


def read_checkpoint(path: str | Path, what: str = "a PyTorch Lightning .ckpt file") -> dict[str, Tensor]:
    """The tensors of a checkpoint file (its ``state_dict`` entry, or the file itself when it is one).

    Memory-mapped when possible; raises FileNotFoundError / ValueError naming the file and `what`
    was expected (a folder, an unreadable or truncated file, a file without weights).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected {what}")
    if path.is_dir():
        kind = "a diffusers folder" if (path / "config.json").is_file() else "a folder"
        if (path / "model.safetensors").is_file():
            kind = "a scadm model folder"
        raise ValueError(f"{path} is {kind}; expected {what}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty; expected {what}")
    obj = _load_object(path, what)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"{path} holds no state_dict of tensors; expected {what}")
    return sd


# ---------------------------------------------------------------------------
# Names: the released layouts -> ours
# ---------------------------------------------------------------------------
def _rename(key: str, rules: tuple) -> str | None:
    """The name the first matching (pattern, build) rule gives `key` (None: no rule matches)."""
    for pattern, build in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return build(m)
    return None


#: ours -> the released MultiScaleEffStyleEncoder's names
_STYLE_RULES = (
    (r"conv_in\.(\d+)\.(.+)", lambda m: f"Encoder.first_layer.{m[1]}.{m[2]}"),
    (r"down\.(\d+)\.(\d+)\.(.+)", lambda m: f"Encoder.enc_layer_{m[1]}.{m[2]}.{m[3]}"),
    (r"up\.(\d+)\.(\d+)\.(.+)", lambda m: f"Decoder.dec_layer_{m[1]}.{int(m[2]) + 1}.{m[3]}"),
    (r"style\.(\d+)\.(.+)", lambda m: f"out.out_{m[1]}.0.{m[2]}"),
)


def released_style_key(ours: str) -> str | None:
    """The released ``MultiScaleEffStyleEncoder`` name of one of our style-encoder keys (None: no counterpart).

    Released: ``Encoder.first_layer`` / ``Encoder.enc_layer_<i>`` (conv, GroupNorm, ReLU),
    ``Decoder.dec_layer_<k>`` (Upsample, conv, GroupNorm, ReLU: one index later than ours, whose
    upsampling is not a module), ``out.out_<k>`` (Conv1d, Tanh). ``pixel_style`` has none.
    """
    return _rename(ours, _STYLE_RULES)


_VQ_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def taming_to_diffusers_key(key: str, levels: int) -> str | None:
    """diffusers ``VQModel`` name of a taming/LDM autoencoder key (None: no counterpart, e.g. ``loss.*``).

    LDM's decoder numbers its ``up`` levels from the finest (``up.0``, run last); diffusers'
    ``up_blocks`` from the coarsest (run first), hence ``up.i`` -> ``up_blocks.(levels - 1 - i)``.
    """
    if key.startswith(("quant_conv.", "post_quant_conv.")) or key == "quantize.embedding.weight":
        return key

    def res(rest: str) -> str:
        return rest.replace("nin_shortcut", "conv_shortcut")

    def up(i: str) -> int:
        return levels - 1 - int(i)

    part = r"(encoder|decoder)"
    return _rename(key, (
        (part + r"\.(conv_in|conv_out)\.(.+)", lambda m: f"{m[1]}.{m[2]}.{m[3]}"),
        (part + r"\.norm_out\.(.+)", lambda m: f"{m[1]}.conv_norm_out.{m[2]}"),
        (part + r"\.mid\.block_([12])\.(.+)", lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{res(m[3])}"),
        (part + r"\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(.+)",
         lambda m: f"{m[1]}.mid_block.attentions.0.{_VQ_ATTN[m[2]]}.{m[3]}"),
        (r"encoder\.down\.(\d+)\.block\.(\d+)\.(.+)", lambda m: f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{res(m[3])}"),
        (r"encoder\.down\.(\d+)\.downsample\.conv\.(.+)", lambda m: f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}"),
        (r"decoder\.up\.(\d+)\.block\.(\d+)\.(.+)", lambda m: f"decoder.up_blocks.{up(m[1])}.resnets.{m[2]}.{res(m[3])}"),
        (r"decoder\.up\.(\d+)\.upsample\.conv\.(.+)", lambda m: f"decoder.up_blocks.{up(m[1])}.upsamplers.0.conv.{m[2]}"),
    ))


def _taming_levels(sd: dict[str, Tensor]) -> int:
    levels = {int(m[1]) for k in sd if (m := re.match(r"encoder\.down\.(\d+)\.", k))}
    return max(levels) + 1 if levels else 0


def _describe_autoencoder(sd: dict[str, Tensor]) -> str:
    """What a taming/LDM autoencoder checkpoint is, from its keys and shapes (for error messages)."""
    levels = _taming_levels(sd)
    if "quantize.embedding.weight" not in sd:
        kind = "a KL autoencoder (no codebook quantize.embedding.weight)" if "quant_conv.weight" in sd else "no autoencoder"
        return f"{kind}, downsampling x{2 ** max(levels - 1, 0)}"
    n, dim = sd["quantize.embedding.weight"].shape
    return f"a VQ autoencoder downsampling x{2 ** (levels - 1)} ({levels} levels), {dim}-channel latents, {n} codes"


def _expected_autoencoder(cfg: AutoencoderConfig) -> str:
    levels = len(cfg.block_out_channels)
    return (f"a VQ autoencoder downsampling x{2 ** (levels - 1)} ({levels} levels), {cfg.vq_embed_dim}-channel latents, "
            f"{cfg.num_vq_embeddings} codes")


# ---------------------------------------------------------------------------
# The mapping itself (pure: dicts of tensors in, dicts of tensors out)
# ---------------------------------------------------------------------------
@dataclass
class ConversionReport:
    """What a conversion did: the source, the output, the tensors written, and every key it dropped, by reason."""

    source: str
    out: str
    written: int = 0
    dropped: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def drop(self, reason: str, keys: list[str]) -> None:
        if keys:
            self.dropped.setdefault(reason, []).extend(keys)

    def lines(self) -> list[str]:
        out = [f"converted {self.source} -> {self.out} ({self.written} tensors)"]
        out += self.notes
        for reason, keys in self.dropped.items():
            shown = ", ".join(keys[:4]) + (f", ... ({len(keys)} in all)" if len(keys) > 4 else "")
            out.append(f"dropped {len(keys)}: {reason}: {shown}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "written": self.written, "notes": self.notes,
                "dropped": {reason: keys for reason, keys in self.dropped.items()}}


def _meta_state(module_factory: Any) -> dict[str, torch.Size]:
    with torch.device("meta"):
        module = module_factory()
    return {k: v.shape for k, v in module.state_dict().items()}


def _check_shapes(path: Path, arch: str, taken: dict[str, Tensor], expected: dict[str, torch.Size],
                  source_name: dict[str, str]) -> None:
    missing = [k for k in expected if k not in taken]
    if missing:
        names = ", ".join(source_name.get(k, k) for k in missing[:3])
        raise ValueError(f"{path}: not a checkpoint of the {arch} architecture: {len(missing)} of its "
                         f"{len(expected)} weights are missing (e.g. {names})")
    for k, shape in expected.items():
        if taken[k].shape != shape:
            raise ValueError(f"{path}: not a checkpoint of the {arch} architecture: {source_name.get(k, k)} has shape "
                             f"{tuple(taken[k].shape)}, {arch} expects {tuple(shape)}")


def _map_first_stage(path: Path, sd: dict[str, Tensor], cfg: AutoencoderConfig, report: ConversionReport,
                     prefix: str = "") -> dict[str, Tensor]:
    """A taming/LDM VQ autoencoder's tensors (keys after `prefix`) -> diffusers VQModel keys, checked against `cfg`."""
    from .models.autoencoder import build_autoencoder

    inner = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    expected = _meta_state(lambda: build_autoencoder(cfg))
    want = _expected_autoencoder(cfg)
    if cfg.type != "vq":
        raise ValueError(f"the config's first stage is {cfg.type!r}; only VQ first stages (LDM's VQ-f4) convert")
    if "quantize.embedding.weight" not in inner or _taming_levels(inner) != len(cfg.block_out_channels) or \
            tuple(inner["quantize.embedding.weight"].shape) != (cfg.num_vq_embeddings, cfg.vq_embed_dim):
        holder = f"its {prefix}* weights hold" if prefix else "it holds"
        raise ValueError(f"{path}: {holder} {_describe_autoencoder(inner)}; expected {want} (LDM's VQ-f4)")
    levels = len(cfg.block_out_channels)
    taken: dict[str, Tensor] = {}
    names: dict[str, str] = {}
    loss, unknown = [], []
    for key, value in inner.items():
        ours = taming_to_diffusers_key(key, levels)
        if ours is None:
            (loss if key.startswith("loss.") else unknown).append(prefix + key)
            continue
        if ours.endswith(("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight")) and value.dim() == 4:
            value = value[:, :, 0, 0]  # LDM's 1x1 convolutions are diffusers' linear layers
        taken[ours], names[ours] = value, prefix + key
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} autoencoder weights have no place in {want} "
                         f"(e.g. {', '.join(unknown[:3])}); expected LDM's VQ-f4")
    _check_shapes(path, want, taken, expected, {k: names.get(k, k) for k in expected})
    extra = sorted(set(taken) - set(expected))
    if extra:
        raise ValueError(f"{path}: {len(extra)} autoencoder weights have no place in {want} (e.g. {names[extra[0]]})")
    report.drop("the autoencoder's training loss (perceptual network, discriminator)", loss)
    return taken


def _check_schedule(path: Path, sd: dict[str, Tensor], cfg: ModelConfig, arch: str, report: ConversionReport) -> None:
    """The stored betas must be the config's schedule: another schedule is another model."""
    from .diffusion.schedule import NoiseSchedule

    if "betas" not in sd:
        report.notes.append("note: no schedule buffers (betas) stored; the schedule was not checked")
        return
    stored = sd["betas"].double().flatten()
    ours = NoiseSchedule(cfg.schedule).betas
    same = stored.shape == ours.shape and torch.allclose(stored, ours, rtol=1e-5, atol=1e-9)
    if not same:
        raise ValueError(
            f"{path}: its noise schedule is not {arch}'s ({stored.numel()} steps, betas {stored[0]:.6g} .. "
            f"{stored[-1]:.6g}; {arch}: {ours.numel()} steps, {ours[0]:.6g} .. {ours[-1]:.6g}): another model; "
            "give --config with its schedule"
        )
    report.notes.append(f"schedule checked: the stored betas equal {arch}'s ({cfg.schedule.kind}, "
                        f"{cfg.schedule.beta_start} -> {cfg.schedule.beta_end}, T = {cfg.schedule.num_train_timesteps})")


def map_scadm_checkpoint(path: Path, sd: dict[str, Tensor], cfg: ModelConfig, weights: str,
                         report: ConversionReport, arch: str = "paper-256") -> dict[str, Tensor]:
    """The SCA-DM Lightning state dict `sd` -> our ``unet.*`` and ``conditioner.style_encoder.*`` tensors.

    Every one of our weights must be found with its shape; every source key is either used or
    reported as dropped (``label_emb``, the other UNet copy, schedule buffers, the first stage,
    which :func:`convert_scadm` maps separately). An unknown key under the UNet's or the style
    encoder's prefix is another architecture: an error.
    """
    from .models.ldm import SemanticLDM

    if weights not in ("ema", "raw"):
        raise ValueError(f"--weights must be 'ema' or 'raw', not {weights!r}")
    if not any(k.startswith(_UNET) for k in sd):
        found = sorted({k.split(".")[0] for k in sd})[:5]
        raise ValueError(f"{path}: no model.diffusion_model.* weights (top-level names: {', '.join(found)}); "
                         "expected the SCA-DM authors' Lightning checkpoint")
    if get_mode(cfg.conditioning.type).components != MODES["style"].components:
        raise ValueError(f"--config {arch}: conditioning.type is {cfg.conditioning.type!r}; SCA-DM checkpoints are 'style'")
    expected = _meta_state(lambda: SemanticLDM(cfg))
    taken: dict[str, Tensor] = {}
    names: dict[str, str] = {}

    # --- UNet: the same names under model.diffusion_model. (raw), dot-free under model_ema. (EMA, LitEma's naming)
    unet_keys = [k for k in expected if k.startswith("unet.")]
    raw_name = {k: _UNET + k[len("unet."):] for k in unet_keys}
    ema_name = {k: f"{_EMA}diffusion_model{k[len('unet.'):].replace('.', '')}" for k in unet_keys}
    if len(set(ema_name.values())) != len(unet_keys):  # the dot removal must stay one-to-one
        raise ValueError(f"--config {arch}: two UNet weights share one EMA name; this architecture cannot be read from EMA")
    if weights == "ema" and not any(k.startswith(_EMA) for k in sd):
        raise ValueError(f"{path}: no EMA weights (model_ema.*) stored; convert with --weights raw")
    chosen, other = (ema_name, raw_name) if weights == "ema" else (raw_name, ema_name)
    for ours in unet_keys:
        names[ours] = chosen[ours]
        if chosen[ours] in sd:
            taken[ours] = sd[chosen[ours]]

    # --- style encoder
    style_prefix = "conditioner.style_encoder."
    for ours in (k for k in expected if k.startswith(style_prefix)):
        theirs = released_style_key(ours[len(style_prefix):])
        if theirs is None:
            raise ValueError(f"--config {arch}: its style encoder has {ours}, which the released encoder has no "
                             "counterpart for (pixel_level is not in the released code)")
        names[ours] = _STYLE + theirs
        if names[ours] in sd:
            taken[ours] = sd[names[ours]]
    _check_shapes(path, arch, taken, expected, names)

    # --- every other key is reported as dropped, or is another architecture
    used = {names[k] for k in taken}
    other_copy = set(other.values())
    bookkeeping = {f"{_EMA}decay", f"{_EMA}num_updates"}
    groups: dict[str, list[str]] = {"label": [], "other": [], "book": [], "buffers": [], "stray": [], "misc": []}
    for k in sd:
        if k in used or k.startswith(_FIRST):
            continue
        if k.startswith((f"{_UNET}label_emb.", f"{_EMA}diffusion_modellabel_emb")):
            groups["label"].append(k)
        elif k in other_copy:
            groups["other"].append(k)
        elif k in bookkeeping:
            groups["book"].append(k)
        elif k.startswith((_UNET, _EMA, _STYLE)):
            groups["stray"].append(k)
        elif "." not in k:
            groups["buffers"].append(k)
        else:
            groups["misc"].append(k)
    if groups["stray"]:
        stray = groups["stray"]
        raise ValueError(f"{path}: {len(stray)} weights have no place in the {arch} architecture "
                         f"(e.g. {', '.join(stray[:3])}): a checkpoint of another architecture")
    report.drop("label_emb, an Embedding the released forward never uses", groups["label"])
    report.drop(f"the {'raw' if weights == 'ema' else 'EMA'} UNet copy (--weights {weights})", groups["other"])
    report.drop("EMA bookkeeping", groups["book"])
    report.drop("schedule and other buffers", groups["buffers"])
    report.drop("other entries", groups["misc"])
    return taken


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------
class _OutputFolder:
    """A new output folder: checked first, written as a hidden temporary sibling, renamed into place."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            what = "a model folder" if (self.out / "config.json").exists() else ("a file" if self.out.is_file() else "a non-empty folder")
            raise FileExistsError(f"{self.out} already exists ({what}); nothing was written: give a new output folder")
        self.tmp = temp_path(self.out)  # a killed conversion's is removed by the next one (remove_stale)

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(self.out.parent)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if self.out.exists():  # an empty folder (checked above)
            self.out.rmdir()
        self.tmp.replace(self.out)


def _first_stage_of(taken: dict[str, Tensor], cfg: AutoencoderConfig, latent_scale: float = 1.0) -> Any:
    """The diffusers autoencoder (a FirstStage, float32) of `taken`."""
    from .models.autoencoder import FirstStage, build_autoencoder

    model = build_autoencoder(cfg)
    model.load_state_dict(taken, strict=True)  # every key and shape was checked by _map_first_stage
    return FirstStage(model.eval(), latent_scale)


def _save_first_stage(taken: dict[str, Tensor], cfg: AutoencoderConfig, folder: Path) -> None:
    _first_stage_of(taken, cfg).save_pretrained(folder)


def _model_of(cfg: ModelConfig, taken: dict[str, Tensor]) -> Any:
    """The SemanticLDM holding `taken`, the memory-mapped tensors themselves: its parameters are built
    empty and assigned, so the model is never in memory twice."""
    from accelerate import init_empty_weights

    from .models.ldm import SemanticLDM

    with init_empty_weights(include_buffers=False):
        model = SemanticLDM(cfg)
    # float32 as stored is assigned as it is (memory-mapped); another float dtype is cast, tensor by tensor
    taken = {k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v for k, v in taken.items()}
    model.load_state_dict(taken, strict=True, assign=True)  # every key and shape was checked by the mapping
    return model.eval()


def _first_stage_folder(path: Path, cfg: AutoencoderConfig) -> Path:
    """A diffusers autoencoder folder given as --first-stage: it must load and fit the model."""
    from .models.autoencoder import FirstStage

    fs = FirstStage.from_pretrained(path)
    if not fs.is_vq or fs.downsample != 2 ** (len(cfg.block_out_channels) - 1) or fs.latent_channels != cfg.latent_channels:
        raise ValueError(f"{path}: a {'VQ' if fs.is_vq else 'KL'} autoencoder downsampling x{fs.downsample} with "
                         f"{fs.latent_channels}-channel latents; expected {_expected_autoencoder(cfg)}")
    return path


# ---------------------------------------------------------------------------
# The two conversions
# ---------------------------------------------------------------------------
def convert_scadm(ckpt: str | Path, out: str | Path, weights: str = "ema", first_stage: str | Path | None = None,
                  config: str | Path = "paper-256") -> ConversionReport:
    """The SCA-DM authors' Lightning checkpoint -> a scadm model folder, a diffusers pipeline folder
    (``model_index.json``, ``unet/``, ``condition_encoder/``, ``vae/``, ``scheduler/``) with
    ``convert-report.json``; the arguments are :func:`scadm_networks`'s. The folder is written
    as a temporary sibling and renamed into place: nothing is left by a failure."""
    from .pipeline import export_model

    target = _OutputFolder(out)  # checked before anything is read
    model, fs, report = scadm_networks(ckpt, weights, first_stage, config)
    report.out = str(target.out)
    with target as tmp:
        export_model(model, fs, tmp)
        (tmp / "convert-report.json").write_text(json.dumps({**report.to_json(), "weights": weights}, indent=2) + "\n")
    return report


def scadm_networks(ckpt: str | Path, weights: str = "ema", first_stage: str | Path | None = None,
                   config: str | Path = "paper-256") -> tuple[Any, Any, ConversionReport]:
    """The networks of the SCA-DM authors' Lightning checkpoint: (SemanticLDM, FirstStage, report),
    holding the checkpoint's memory-mapped tensors (:func:`read_checkpoint`), every key and shape
    checked against the architecture (one-line errors that name the file and the key).

    weights: "ema" (the UNet's EMA copy, what the FID script samples with under ``ema_scope``) or
    "raw" (the trained weights, what the gradio demo loads). The style encoder has one copy (no EMA).
    first_stage: None (the checkpoint's own ``first_stage_model.*``), LDM's VQ-f4 ``model.ckpt``,
    or a diffusers autoencoder folder. config: the architecture (a preset name or a YAML file);
    its sampling defaults are replaced by the FID script's (:data:`RELEASED_FID_SAMPLING`).
    """
    from .models.autoencoder import FirstStage

    ckpt = Path(ckpt)
    recipe = load_recipe(config)
    arch = Path(str(config)).stem if str(config).endswith((".yaml", ".yml", ".json")) else str(config)
    cfg = replace(recipe.model, sampling=replace(RELEASED_FID_SAMPLING),
                  domain=recipe.model.domain or "CelebA-HQ face photos (the SCA-DM authors' training set)")
    report = ConversionReport(str(ckpt), "")
    sd = read_checkpoint(ckpt, "the SCA-DM authors' PyTorch Lightning .ckpt file")
    taken = map_scadm_checkpoint(ckpt, sd, cfg, weights, report, arch)
    _check_schedule(ckpt, sd, cfg, arch, report)
    if "scale_factor" in sd and abs(float(sd["scale_factor"]) - cfg.latent_scale) > 1e-12:
        cfg = replace(cfg, latent_scale=float(sd["scale_factor"]))
        report.notes.append(f"latent_scale set to the stored scale_factor {cfg.latent_scale:.6g}")
    stored_first = [k for k in sd if k.startswith(_FIRST)]

    if first_stage is None:
        if not stored_first:
            raise ValueError(f"{ckpt}: no first_stage_model.* weights stored; give --first-stage (LDM's vq-f4 "
                             "model.ckpt or a diffusers vqvae folder)")
        fs = _first_stage_of(_map_first_stage(ckpt, sd, recipe.autoencoder, report, _FIRST), recipe.autoencoder)
        source = f"first_stage_model.* of {ckpt.name}"
    else:
        fp = Path(first_stage)
        if fp.is_dir():
            fs = FirstStage.from_pretrained(_first_stage_folder(fp, recipe.autoencoder))
        else:
            fs = _first_stage_of(_map_vq_file(fp, recipe.autoencoder, report), recipe.autoencoder)
        report.drop(f"the checkpoint's own first stage (replaced by --first-stage {fp.name})", stored_first)
        source = str(fp)
    cfg = replace(cfg, autoencoder=f"converted from {source}").validate()
    fs.latent_scale = cfg.latent_scale

    report.notes.insert(0, f"UNet: {'EMA' if weights == 'ema' else 'raw'} weights; style encoder: cond_stage_model.* "
                           f"(skip join: {cfg.conditioning.style_encoder.skip_join}); sampling defaults: the FID script's "
                           f"(DDIM {cfg.sampling.steps} steps, eta 0, s = 0 i.e. w = 1, null 'zero')")
    report.written = len(taken)
    return _model_of(cfg, taken), fs, report


def _map_vq_file(path: Path, cfg: AutoencoderConfig, report: ConversionReport) -> dict[str, Tensor]:
    sd = read_checkpoint(path, "LDM's VQ-f4 model.ckpt")
    # an LDM/SCA-DM checkpoint carries its first stage under first_stage_model.: take that
    prefix = _FIRST if not any(k.startswith("encoder.") for k in sd) and any(k.startswith(_FIRST) for k in sd) else ""
    if prefix:
        report.notes.append(f"took the first stage stored under {prefix}* in {path.name}")
        report.drop("the rest of the latent-diffusion checkpoint", [k for k in sd if not k.startswith(prefix)])
    return _map_first_stage(path, sd, cfg, report, prefix)


def convert_vq(ckpt: str | Path, out: str | Path, config: str | Path = "paper-256") -> ConversionReport:
    """LDM's VQ-f4 ``model.ckpt`` (taming layout) -> a diffusers VQModel folder (``--autoencoder``, ``--first-stage``).

    The architecture expected is the config's ``autoencoder`` section (paper-256: VQ-f4); the
    weights load strictly, with no missing or unexpected keys besides the loss network's.
    """
    ckpt = Path(ckpt)
    recipe = load_recipe(config)
    target = _OutputFolder(out)
    report = ConversionReport(str(ckpt), str(target.out))
    taken = _map_vq_file(ckpt, recipe.autoencoder, report)
    with target as tmp:
        _save_first_stage(taken, recipe.autoencoder, tmp)
        report.written = len(taken)
    return report
