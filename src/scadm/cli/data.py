"""Data commands: synth, prepare (celebamask-hq, folder), labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

import typer

from .. import checks
from . import common
from .options import ArgInDir, ArgOutDir, Choice, Integer, Number, OutDir, checked


def _size(value: str, name: str) -> str:
    from ..data.layout import parse_size

    try:
        h, w = parse_size(value)
    except ValueError:
        raise ValueError(f"{name} {value!r}: give one number (square) or HxW, e.g. 64 or 64x96") from None
    checks.integer(h, name, lo=8, hi=16384)
    checks.integer(w, name, lo=8, hi=16384)
    return value


def _label_set(value: str, name: str) -> str:
    from ..labels import get_label_set

    get_label_set(value)  # a built-in name or a readable JSON/YAML file; its errors name it
    return value


def _print_report(report: dict, out: Path) -> None:
    skipped = report["skipped"]
    common.console.print(
        f"prepared {report['processed']} ids into {out} "
        f"({report['newly_processed']} new, {report['already_done']} already done), skipped {len(skipped)}",
        highlight=False,
    )
    for s in skipped[:10]:
        common.console.print(f"  skipped {s['id']}: {s['reason']}", highlight=False, soft_wrap=True, markup=False)
    if len(skipped) > 10:
        common.console.print(f"  ... and {len(skipped) - 10} more", highlight=False)
    if skipped:
        common.console.print(f"details: {out / 'prepare-report.json'}", highlight=False)


def synth(
    n: int = Integer(1000, "--n", help="Number of faces.", lo=1, hi=10_000_000),
    size: str = typer.Option("64", "--size", help="Image size: 64 or HxW such as 64x96.", callback=checked(_size)),
    seed: int = Integer(0, "--seed", help="Generator seed.", lo=0),
    out: Path = OutDir(..., "--out", help="Output folder (empty, or a previous synth output of the same arguments)."),
    test_fraction: float = Number(0.1, "--test-fraction", help="Fraction of faces taken from the held-out test range.",
                                  lo=0, hi=1),
) -> None:
    """Write procedural synthetic faces (images, labels, attributes, splits, styles.json)."""
    from ..data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(out, n=n, size=size, seed=seed, test_fraction=test_fraction)
    common.console.print(f"wrote {n} synthetic faces to {out}", highlight=False)


prepare_app = typer.Typer(
    name="prepare",
    help="Convert raw data sets into the dataset layout (images/, labels/, attributes.csv, splits/).",
    no_args_is_help=True,
)


@prepare_app.command("celebamask-hq")
def prepare_celebamask_hq_cmd(
    raw_root: Path = typer.Argument(..., help="The unpacked CelebAMask-HQ release (never written to), or "
                                    "celebamask-hq: the one `scadm fetch celebamask-hq` downloaded.",
                                    callback=checked(lambda v, n: checks.input_dir(checks.fetched(v, n), n,
                                                                                   "CelebAMask-HQ folder"))),
    out: Path = ArgOutDir("Output dataset folder."),
    size: str = typer.Option("256", "--size", help="Output size: 256 or HxW.", callback=checked(_size)),
    split: str = Choice("scadm", "--split", help="scadm (test 28000-29999) or ldm (25k train / 5k validation).",
                        options=("scadm", "ldm")),
    workers: int = Integer(1, "--workers", help="Parallel worker processes.", lo=1, hi=256),
    split_files: Optional[Tuple[Path, Path]] = typer.Option(
        None, "--split-files", callback=checked(checks.input_file, "split file"),
        help="TRAIN_TXT VAL_TXT: exact id lists (one k or k.jpg per line), e.g. LDM's celebahqtrain.txt celebahqvalidation.txt."
    ),
) -> None:
    """Prepare the raw CelebAMask-HQ release (merge part masks, resize, attributes, splits)."""
    from ..data.prepare import prepare_celebamask_hq

    report = prepare_celebamask_hq(raw_root, out, size=size, split=split, workers=workers, split_files=split_files)
    _print_report(report, out)


@prepare_app.command("folder")
def prepare_folder_cmd(
    images: Path = ArgInDir("Folder of images <id>.png|jpg.", "image folder"),
    labels: Path = ArgInDir("Folder of label maps <id>.png (class ids, or colours of the label set).", "label folder"),
    out: Path = ArgOutDir("Output dataset folder."),
    label_set: Optional[str] = typer.Option(None, "--labels", callback=checked(_label_set),
                                            help="Label set: built-in name or JSON/YAML file (default celebamask-hq)."),
    size: Optional[str] = typer.Option(None, "--size", help="S (square) or HxW; omitted = keep each image's size.",
                                       callback=checked(_size)),
    test_fraction: float = Number(0.1, "--test-fraction", help="Random fraction of ids for the test split.", lo=0, hi=1),
    seed: int = Integer(0, "--seed", help="Seed of the split.", lo=0),
    workers: int = Integer(1, "--workers", help="Parallel worker processes.", lo=1, hi=256),
) -> None:
    """Prepare a folder of images and already-merged label maps (custom data, DeepFashion, ...)."""
    from ..data.prepare import prepare_folder

    report = prepare_folder(
        images, labels, out, label_set=label_set, size=size, test_fraction=test_fraction, seed=seed, workers=workers
    )
    _print_report(report, out)


def labels(
    label_set: Optional[str] = typer.Option(None, "--labels", callback=checked(_label_set),
                                            help="Built-in name or JSON/YAML file (default celebamask-hq)."),
    as_json: bool = typer.Option(False, "--json", help="Print the label set as JSON."),
) -> None:
    """Print a label set: ids, names, colours and left/right pairs."""
    from rich.table import Table

    from ..labels import get_label_set

    ls = get_label_set(label_set)
    if as_json:
        typer.echo(json.dumps(ls.to_dict(), indent=2))
        return
    table = Table(title=f"{ls.name} ({ls.num_classes} classes)")
    table.add_column("id", justify="right")
    table.add_column("name")
    table.add_column("colour (RGB)")
    table.add_column("")
    for i, (name, c) in enumerate(zip(ls.names, ls.colors)):
        table.add_row(str(i), name, f"{c[0]},{c[1]},{c[2]}", f"[on rgb({c[0]},{c[1]},{c[2]})]    [/]")
    common.console.print(table)
    if ls.flip_pairs:
        pairs = ", ".join(f"{ls.names[a]}<->{ls.names[b]}" for a, b in ls.flip_pairs)
        common.console.print(f"flip pairs: {pairs}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.add_typer(prepare_app, name="prepare")
    app.command("labels")(labels)
