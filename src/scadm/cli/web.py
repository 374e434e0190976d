"""`scadm app`: the web editor (gradio; ``pip install 'scadm[app]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import console
from .options import DeviceOpt, Integer, ModelOpt, ParserOpt


def app_cmd(
    model: Optional[Path] = ModelOpt,
    parser: Optional[Path] = ParserOpt("Face parser (79999_iter.pth or a parser run folder) "
                                                              "for photos without a mask; default: the model's own."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (127.0.0.1: this machine only)."),
    port: int = Integer(7860, "--port", help="Port to serve on.", lo=1, hi=65535),
    max_upload_mb: int = Integer(20, "--max-upload-mb", help="Largest upload accepted, in MB.", lo=1, hi=1024),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Serve the web editor: every application in a browser, with a mask you can paint."""
    from ..app import serve

    serve(model=model, parser=parser, host=host, port=port, max_upload_mb=max_upload_mb, device=device,
          printer=console.print)


def register(app: typer.Typer) -> None:
    app.command("app")(app_cmd)
