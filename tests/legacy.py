"""Model folders as scadm < 0.2 wrote them (config.json, model.safetensors, autoencoder/, parser/),
written here so that tests can check that such folders still load."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from scadm.config import to_dict


def save_legacy(model, folder: Path, first_stage=None, parser_info: tuple | None = None) -> Path:
    """`model` (a SemanticLDM) as config.json + model.safetensors; `first_stage` as autoencoder/;
    `parser_info` = (CompactParser, info) as parser/."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt", "scadm_schema": str(model.cfg.schema_version)})
    (folder / "config.json").write_text(json.dumps(to_dict(model.cfg), indent=2) + "\n")
    if first_stage is not None:
        first_stage.save_pretrained(folder / "autoencoder")
    if parser_info is not None:
        from scadm.models.face_parser import save_compact_parser

        save_compact_parser(parser_info[0], folder / "parser", parser_info[1])
    return folder
