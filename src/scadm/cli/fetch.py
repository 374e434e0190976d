"""`scadm fetch NAME`: known weight files and datasets, downloaded, verified and made ready (see scadm.fetch)."""

from __future__ import annotations

import json
from typing import Optional

import typer

from .common import UserError, console


def fetch_cmd(
    name: Optional[str] = typer.Argument(None, help="parser, sca-dm, vq-f4 or celebamask-hq."),
    show: bool = typer.Option(False, "--list", help="What each name is, its size, sources and terms, and whether "
                              "it is here."),
    accept_terms: bool = typer.Option(False, "--accept-terms", help="Accept the terms a dataset is published under."),
    as_json: bool = typer.Option(False, "--json", help="With --list: one JSON object."),
) -> None:
    """Download a known weight file or dataset into scadm's cache ($SCADM_HOME), verified and ready to use."""
    from ..fetch import describe, fetch, home

    if show or name is None:
        rows = describe()
        if as_json:
            print(json.dumps({"home": str(home()), "names": rows}))
            return
        if name is None and not show:
            raise UserError("give a name (parser, sca-dm, vq-f4, celebamask-hq), or --list to see them")
        out = [f"scadm fetch: names, fetched into {home()} ($SCADM_HOME)", ""]
        for r in rows:
            size = f"{r['size']:,} bytes" if r["size"] else "size not published"
            check = f"sha256 {r['sha256']}" if r["sha256"] else f"checked by {r['checked_by']}"
            out += [f"{r['name']}: {r['what']}",
                    f"    here: {r['fetched'] or 'not fetched'}",
                    f"    file: {r['file']}, {size}; {check}",
                    "    sources, in order: " + "; ".join(r["sources"]),
                    f"    terms: {r['terms']}", ""]
        console.print("\n".join(out).rstrip(), highlight=False, markup=False, soft_wrap=True)
        return
    fetch(name, accept_terms=accept_terms, printer=lambda line: console.print(line, highlight=False, markup=False))


def register(app: typer.Typer) -> None:
    app.command("fetch")(fetch_cmd)
