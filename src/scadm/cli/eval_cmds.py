"""`scadm eval ...`: the papers' protocols and the synthetic ground-truth benchmark."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from .common import UserError, console

eval_app = typer.Typer(help="Evaluate a model with the papers' protocols (JSON + markdown + plots).", no_args_is_help=True)

ModelOpt = typer.Option(None, "--model", "-m", help="Model folder (default: the bundled synthetic-64 model).")
StepsOpt = typer.Option(None, "--steps", help="Sampling steps (default: the model's).")
DeviceOpt = typer.Option(None, "--device", help="cpu or cuda.")


def _command() -> str:
    return "scadm " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def default_parser(model_folder: Path | None) -> Path | None:
    """The parser shipped next to a model (model/parser), if any."""
    from ..pipeline import default_model_folder

    folder = Path(model_folder) if model_folder else default_model_folder()
    p = folder / "parser"
    return p if (p / "parser.json").is_file() else None


@eval_app.command("synthetic")
def synthetic(
    model: Optional[Path] = ModelOpt,
    n: int = typer.Option(200, "--n", help="Held-out synthetic faces."),
    parser: Optional[Path] = typer.Option(None, "--parser", help="Parser for noise_miou_ratio (default: the model's parser/)."),
    steps: Optional[int] = StepsOpt,
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(16, "--batch-size"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="Also write report.md and per_part.png here."),
    device: Optional[str] = DeviceOpt,
) -> None:
    """The synthetic ground-truth benchmark of controllability (see scadm.eval.synthetic)."""
    import json

    from rich.progress import Progress

    from ..eval.parser import load_parser
    from ..eval.reporting import plot_per_part, synthetic_markdown, write_json
    from ..eval.synthetic import SyntheticBenchmark
    from ..pipeline import SCADMPipeline

    if n < 2:
        raise UserError(f"--n {n}: give at least 2 faces")
    pipe = SCADMPipeline.from_pretrained(model, device=device)
    parser_path = parser or default_parser(model)
    parser_net = load_parser(parser_path).to(pipe.device).eval() if parser_path else None
    if parser_net is None:
        console.print("[yellow]no parser given and none ships with the model: noise_miou_ratio is skipped[/]")
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("synthetic benchmark", total=None)
        bench = SyntheticBenchmark(pipe, n=n, seed=seed, batch_size=batch_size, sampling={"steps": steps},
                                   progress=lambda what, k: prog.update(task, description=f"{what}: {k}/{n}"))
        report = bench.run(parser=parser_net)
    report["sampling_desc"] = (f"{pipe.cfg.sampling.sampler}, {steps or pipe.cfg.sampling.steps} steps, "
                               f"eta {pipe.cfg.sampling.eta}, guidance s = {pipe.cfg.sampling.guidance_scale} "
                               f"({pipe.cfg.sampling.null_condition} null condition)")
    report["command"] = _command()
    report["parser"] = str(parser_path) if parser_path else None
    summary = {k: v for k, v in report.items() if k.endswith(("_success", "_preserved", "_monotonic", "_ratio"))}
    console.print_json(json.dumps(summary, default=float))
    if json_out:
        write_json(report, Path(json_out))
    if report_dir:
        report_dir = Path(report_dir)
        write_json(report, report_dir / "report.json")
        (report_dir / "report.md").write_text(synthetic_markdown(report, report["command"]))
        plot_per_part(report, report_dir / "per_part.png")
        console.print(f"report: {report_dir / 'report.md'}")


@eval_app.command("timing")
def timing(
    model: Optional[Path] = ModelOpt,
    sampler: str = typer.Option("ddim", "--sampler"),
    steps: str = typer.Option("50", "--steps", help="Comma-separated step counts."),
    batch_size: int = typer.Option(1, "--batch-size"),
    repeats: int = typer.Option(3, "--repeats"),
    json_out: Optional[Path] = typer.Option(None, "--json"),
    device: Optional[str] = DeviceOpt,
) -> None:
    """Seconds per image and per step (noise-based generation with guidance off, and reconstruction with guidance on)."""
    from ..eval.protocols import timing_protocol
    from ..eval.reporting import markdown_table, write_json

    step_list = [int(s) for s in steps.split(",") if s.strip()]
    rows = timing_protocol(model, sampler=sampler, steps=step_list, batch_size=batch_size, repeats=repeats, device=device)
    console.print(markdown_table(rows, list(rows[0].keys())))
    if json_out:
        write_json({"command": _command(), "rows": rows}, Path(json_out))


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
