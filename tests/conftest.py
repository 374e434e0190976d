"""Shared test helpers."""

from __future__ import annotations

import pytest

from scadm.cli import main


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def run_cli(capsys):
    """Run `scadm ARGS...` in-process; returns exit code and captured stdout/stderr."""

    def run(*args: str) -> CliResult:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random-weight tiny model folder (config.json, model.safetensors, autoencoder/)."""
    import dataclasses

    import torch

    from scadm.config import load_recipe
    from scadm.models.autoencoder import FirstStage, build_autoencoder
    from scadm.models.ldm import SemanticLDM
    from scadm.pipeline import export_model

    torch.manual_seed(0)
    recipe = load_recipe("tiny")
    model = SemanticLDM(recipe.model)
    for p in model.unet.parameters():  # give zero-initialised layers some weight so outputs depend on inputs
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.02)
    folder = tmp_path_factory.mktemp("models") / "tiny"
    export_model(model.eval(), FirstStage(build_autoencoder(recipe.autoencoder).eval()), folder)
    return folder


@pytest.fixture(scope="session")
def tiny_faces(tmp_path_factory):
    """Four 32 px synthetic faces written as PNGs: (image path, id-mask path, colour-mask path)."""
    import numpy as np
    from PIL import Image

    from scadm.data.synthetic import render_face
    from scadm.labels import CELEBAMASK_HQ

    root = tmp_path_factory.mktemp("faces")
    out = []
    for i in range(4):
        f = render_face(1_000_000 + i, size=32)
        img, ids, col = root / f"face{i}.png", root / f"face{i}_mask.png", root / f"face{i}_color.png"
        Image.fromarray(f.image).save(img)
        Image.fromarray(f.label).save(ids)
        Image.fromarray(CELEBAMASK_HQ.colorize(f.label).astype(np.uint8)).save(col)
        out.append((img, ids, col))
    return out
