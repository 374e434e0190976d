"""Model commands: info."""

from __future__ import annotations

import json
from collections import Counter

import typer

from .common import console


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


def info(
    config: str = typer.Option(..., "--config", "-c", help="Preset name (e.g. paper-256) or a YAML/JSON file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Parameter counts per module of a model config."""
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


def register(app: typer.Typer) -> None:
    app.command("info")(info)
