"""Model commands: info (what a model knows, or a config's parameter counts), upgrade-model (an older
model folder rewritten as a diffusers pipeline folder)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer

from .common import UserError, console
from .options import ModelOpt


def parameter_report(config: str) -> dict:
    """Per-module parameter counts of a config, built on the meta device (no memory, no weights)."""
    import torch

    from ..config import load_config, to_dict
    from ..models.ldm import SemanticLDM, count_parameters

    cfg = load_config(config)
    with torch.device("meta"):
        model = SemanticLDM(cfg)
    unet = model.unet
    parts: Counter[str] = Counter()
    for name, p in unet.named_parameters():
        top = name.split(".")[0]
        parts[top] += p.numel()
    kinds: Counter[str] = Counter()
    for name, p in unet.named_parameters():
        if ".in_norm." in name or ".out_norm." in name:
            kinds["spade"] += p.numel()
        elif ".attn2." in name:
            kinds["cross_attention"] += p.numel()
        elif ".transformer_blocks." in name or ".proj_in." in name or ".proj_out." in name:
            kinds["transformer_other"] += p.numel()
    return {
        "config": cfg.name,
        "unet_params": count_parameters(unet),
        "style_encoder_params": count_parameters(model.conditioner),
        "total_params": count_parameters(model),
        "unet_modules": dict(parts),
        "unet_by_kind": dict(kinds),
        "latent_size": list(cfg.latent_size),
        "image_size": list(cfg.image_size),
        "cross_attention": model.unet.cross_attention,
        "resolved_config": to_dict(cfg),
    }


def model_report(folder) -> dict:
    """What a model folder knows and how it samples: its config's name, domain and sizes, its sampling
    and editing defaults, and its own face parser (with what that parser knows)."""
    from ..fetch import fetched
    from ..models.face_parser import parser_domain
    from ..models.ldm import read_model_config
    from ..photos import own_parser_folder
    from ..pipeline import default_model_folder

    folder = folder if folder is not None else default_model_folder()
    cfg = read_model_config(folder)
    own = own_parser_folder(folder)
    s = cfg.sampling
    return {
        "model": str(folder), "name": cfg.name, "domain": cfg.domain or "not recorded",
        "image_size": list(cfg.image_size), "latent_size": list(cfg.latent_size), "labels": cfg.labels
        if isinstance(cfg.labels, str) else "custom", "conditioning": cfg.conditioning.type,
        "sampling": f"{s.sampler}, {s.steps} steps, guidance s = {s.guidance_scale} ({s.null_condition} null)",
        "editing": f"inversion {s.inversion}" + (", the rest of the face kept (blend)" if s.blend else ""),
        "parser": ({"path": str(own), "domain": parser_domain(own)} if own is not None else None),
        "fetched": {name: str(path) for name, path in fetched().items()},
    }


def info(
    config: str = typer.Option(None, "--config", "-c", help="Preset name (e.g. paper-256) or a YAML/JSON file: "
                               "parameter counts per module."),
    model: Path = ModelOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """What a model knows (--model: its training domain, sizes, defaults and parser; default: the bundled
    model), or the parameter counts of a config (--config)."""
    if config is not None and model is not None:
        raise UserError("give --config (a config's parameter counts) or --model (a model folder), not both")
    if config is None:
        report = model_report(model)
        if as_json:
            print(json.dumps(report))
            return
        parser = report["parser"]
        lines = [f"model {report['name']} ({report['model']})", f"trained on: {report['domain']}",
                 f"images {report['image_size'][0]}x{report['image_size'][1]}, latents "
                 f"{report['latent_size'][0]}x{report['latent_size'][1]}, labels {report['labels']}, "
                 f"conditioning {report['conditioning']}",
                 f"sampling: {report['sampling']}", f"editing a given face: {report['editing']}",
                 "face parser: " + (f"{parser['path']} (knows {parser['domain']})" if parser else "none"),
                 "fetched (scadm fetch): " + (", ".join(f"{k} {v}" for k, v in report["fetched"].items()) or "nothing")]
        console.print("\n".join(lines), highlight=False, markup=False)
        return
    report = parameter_report(config)
    if as_json:
        print(json.dumps(report))
        return
    from rich.table import Table

    table = Table(title=f"scadm model {report['config']!r}: latent {report['latent_size']}, "
                        f"cross-attention {report['cross_attention']}")
    table.add_column("module")
    table.add_column("parameters", justify="right")
    for key, n in report["unet_modules"].items():
        table.add_row(f"unet.{key}", f"{n:,}")
    for key, n in report["unet_by_kind"].items():
        table.add_row(f"  of which {key}", f"{n:,}", style="dim")
    table.add_row("unet (total)", f"{report['unet_params']:,}", style="bold")
    table.add_row("style encoder / conditioner", f"{report['style_encoder_params']:,}", style="bold")
    table.add_row("total", f"{report['total_params']:,}", style="bold")
    console.print(table)


def upgrade_model(
    old: Path = typer.Argument(..., help="A model folder of scadm < 0.2 (config.json, model.safetensors, autoencoder/)."),
    new: Path = typer.Argument(..., help="The folder to write (must not exist, or be empty)."),
) -> None:
    """Write an older model folder as a diffusers pipeline folder (model_index.json, unet/, condition_encoder/,
    vae/, scheduler/, face_parser/); OLD is left unchanged, and every tensor is checked equal after reloading."""
    from ..pipeline import upgrade_folder

    try:
        copied = upgrade_folder(old, new)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    extra = f"; also copied: {', '.join(copied)}" if copied else ""
    console.print(f"wrote {new} (model_index.json and its components; every tensor reloads equal){extra}",
                  highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("upgrade-model")(upgrade_model)
