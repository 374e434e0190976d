"""`scadm eval ...`: the papers' protocols and the synthetic ground-truth benchmark."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from .. import checks
from .common import UserError, console
from ..diffusion.inversion import INVERSIONS
from .options import (BlendOpt, Choice, DeviceOpt, InDir, InFileOrDir, Integer, InversionOpt, ModelOpt, OutDir,
                      OutFile, StepsOpt, checked, sampler_name)


def _step_list(value: str, name: str) -> list[int]:
    items = [v for v in value.split(",") if v.strip()]
    if not items:
        raise ValueError(f"{name} {value!r}: give comma-separated step counts, e.g. 10,50")
    return [checks.integer(v.strip(), name, lo=1, hi=10_000) for v in items]


def _eta_list(value: str, name: str) -> list[float]:
    items = [v for v in value.split(",") if v.strip()]
    if not items:
        raise ValueError(f"{name} {value!r}: give comma-separated eta values in [0, 1], e.g. 0,1")
    return [checks.number(v.strip(), name, lo=0, hi=1) for v in items]


DataOpt = InDir(..., "--data", help="Prepared dataset folder.", what="dataset folder")
SplitOpt = typer.Option("test", "--split", help="The split to evaluate (its splits/<split>.txt).")
NOpt = Integer(None, "--n", help="At most this many ids of the split.", lo=1)
WorkOpt = OutDir(Path("runs/eval"), "--out", help="Work folder: generated images (reused), JSON, markdown.")
ParserOpt = InFileOrDir(None, "--parser", help="Parser run folder or 79999_iter.pth (default: the model's parser/).")
InceptionOpt = InFileOrDir(None, "--inception", help="weights-inception-2015-12-05-6726825d.pth (FID/KID).")
LpipsVggOpt = InFileOrDir(None, "--lpips-vgg", help="vgg16-397923af.pth (LPIPS backbone).")
LpipsLinOpt = InFileOrDir(None, "--lpips-lin", help="the lpips wheel's v0.1/vgg.pth (LPIPS linear heads).")
SamplesOpt = Integer(10, "--samples", help="diversity: samples per mask.", lo=2, hi=10_000)
SeedOpt = Integer(0, "--seed", help="Seed: image k uses seed + k.", lo=0)
JsonOpt = OutFile(None, "--json", help="Write the JSON report here.")
ProtocolInversionOpt = Choice(None, "--inversion", help="none (default: every image sampled from noise, as the papers' "
                              "released code does), exact or ddim (each dataset face inverted: this project's faithful "
                              "editing; the report says so).", options=INVERSIONS)
ProtocolBlendOpt = typer.Option(None, "--blend/--no-blend", help="Keep what an edit does not change (needs inversion; "
                                "--blend alone inverts as the model's default does). A blended reconstruction is the "
                                "first stage's encode-decode: it measures the autoencoder, not the denoiser.",
                                show_default=False)

eval_app = typer.Typer(help="Evaluate a model with the papers' protocols (JSON + markdown + plots).", no_args_is_help=True)


def _command() -> str:
    return "scadm " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _shown(path: Path) -> str:
    """A path for a report: relative to the working directory when it lies below it, so reports
    made in a checkout do not carry the machine's absolute paths."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def default_parser(model_folder: Path | None) -> Path | None:
    """The parser shipped with a model (its face_parser/, or parser/ in older folders), if any."""
    from ..photos import own_parser_folder
    from ..pipeline import default_model_folder

    return own_parser_folder(Path(model_folder) if model_folder else default_model_folder())


@eval_app.command("synthetic")
def synthetic(
    model: Optional[Path] = ModelOpt,
    n: int = Integer(200, "--n", help="Held-out synthetic faces.", lo=2, hi=1_000_000),
    parser: Optional[Path] = ParserOpt,
    sampler: Optional[str] = typer.Option(None, "--sampler", help="ddim, ddpm, dpm++, unipc or student (a distilled student's; default: the model's).",
                                          callback=checked(sampler_name)),
    steps: Optional[int] = StepsOpt,
    seed: int = SeedOpt,
    batch_size: int = Integer(16, "--batch-size", help="Faces per sampling batch.", lo=1, hi=4096),
    inversion: Optional[str] = InversionOpt,
    blend: Optional[bool] = BlendOpt,
    lpips_vgg: Optional[Path] = LpipsVggOpt,
    lpips_lin: Optional[Path] = LpipsLinOpt,
    json_out: Optional[Path] = JsonOpt,
    report_dir: Optional[Path] = OutDir(None, "--report-dir", help="Also write report.json, report.md and per_part.png here."),
    device: Optional[str] = DeviceOpt,
) -> None:
    """The synthetic ground-truth benchmark of controllability (see scadm.eval.controllability)."""
    import json

    from rich.progress import Progress

    from ..config import SamplingOptions
    from ..eval.controllability import SyntheticBenchmark, edits_description
    from ..models.face_parser import load_parser
    from ..eval.reporting import plot_per_part, synthetic_markdown, write_json
    from ..pipeline import SCADMPipeline

    pipe = SCADMPipeline.from_pretrained(model, device=device)
    parser_path = parser or default_parser(model)
    parser_net = load_parser(parser_path).to(pipe.device).eval() if parser_path else None
    if parser_net is None:
        console.print("[yellow]no parser given and none ships with the model: noise_miou_ratio is skipped[/]")
    options = SamplingOptions(sampler=sampler, steps=steps, inversion=inversion, blend=blend)
    try:
        run = options.resolve(pipe.cfg.sampling)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    noise_run = SamplingOptions(sampler=sampler, steps=steps).resolve(pipe.cfg.sampling, noise_based=True, face=False)
    lpips = None
    if lpips_vgg or lpips_lin:
        from ..eval.lpips import LPIPS

        lpips = LPIPS(lpips_vgg, lpips_lin).to(pipe.device).eval()
    # a stopped run resumes from here (written after each protocol, deleted once the report is written)
    checkpoint = Path(json_out).with_suffix(".partial.json") if json_out else (
        Path(report_dir) / "partial.json" if report_dir else None)
    identity = {"model": str(Path(model).resolve()) if model else "bundled", "parser": str(parser_path),
                "sampling": dataclasses.asdict(run)}
    if checkpoint is not None and checkpoint.is_file():
        console.print(f"resuming the stopped run in {_shown(checkpoint)}")
    with Progress(console=console, transient=True) as prog:
        task = prog.add_task("synthetic benchmark", total=None)
        bench = SyntheticBenchmark(pipe, n=n, seed=seed, batch_size=batch_size, sampling=options, lpips=lpips,
                                   progress=lambda what, k: prog.update(task, description=f"{what}: {k}/{n}"))
        report = bench.run(parser=parser_net, checkpoint=checkpoint, identity=identity)
    nulls = f"{run.null_condition} null condition"
    if noise_run.null_condition != run.null_condition:
        nulls += f"; noise-based samples: {noise_run.null_condition}"
    spacing = pipe.schedule.spacing(run.sampler)
    report["sampling_desc"] = (f"{run.sampler} ({spacing} spacing), {run.steps} steps, eta {run.eta}, "
                               f"guidance s = {run.guidance_scale} ({nulls})")
    if run.inversion != "none":
        report["sampling_desc"] += "; " + edits_description(run)
    report["command"] = _command()
    report["parser"] = _shown(parser_path) if parser_path else None
    summary = {k: v for k, v in report.items()
               if k.endswith(("_success", "_preserved", "_monotonic", "_ratio", "_psnr", "_ssim", "_lpips", "_drift"))}
    console.print_json(json.dumps(summary, default=float))
    if json_out:
        write_json(report, Path(json_out))
    if report_dir:
        report_dir = Path(report_dir)
        write_json(report, report_dir / "report.json")
        (report_dir / "report.md").write_text(synthetic_markdown(report, report["command"]))
        plot_per_part(report, report_dir / "per_part.png")
        console.print(f"report: {report_dir / 'report.md'}")
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)


@eval_app.command("timing")
def timing(
    model: Optional[Path] = ModelOpt,
    sampler: str = typer.Option("ddim", "--sampler", help="ddim, ddpm, dpm++, unipc or student.", callback=checked(sampler_name)),
    steps: str = typer.Option("50", "--steps", help="Comma-separated step counts, e.g. 10,50.", callback=checked(_step_list)),
    batch_size: int = Integer(1, "--batch-size", help="Images per call.", lo=1, hi=4096),
    repeats: int = Integer(3, "--repeats", help="Timed calls per setting (after one warm-up).", lo=1, hi=1000),
    json_out: Optional[Path] = JsonOpt,
    device: Optional[str] = DeviceOpt,
) -> None:
    """Seconds per image and per step (noise-based generation with guidance off, and reconstruction with guidance on)."""
    from ..eval.protocols import timing_protocol
    from ..eval.reporting import markdown_table, write_json

    rows = timing_protocol(model, sampler=sampler, steps=steps, batch_size=batch_size, repeats=repeats, device=device)
    console.print(markdown_table(rows, list(rows[0].keys())))
    if json_out:
        write_json({"command": _command(), "rows": rows}, Path(json_out))


def _scorer(model, data, split, n, parser, inception, lpips_vgg, lpips_lin, device):
    from ..eval.protocols import Scorer
    from ..weights import MissingWeightsError
    from ..models.ldm import read_model_config
    from ..pipeline import default_model_folder

    folder = Path(model) if model else default_model_folder()
    cfg = read_model_config(folder)
    parser_path = parser or default_parser(folder)
    parser_net = None
    if parser_path:
        from ..models.face_parser import load_parser

        parser_net = load_parser(parser_path).eval()
    inception_net = None
    try:
        from ..eval.inception import InceptionFeatures

        inception_net = InceptionFeatures(inception).eval()
    except MissingWeightsError as exc:
        if inception:
            raise
        console.print(f"[yellow]FID/KID skipped:[/] {exc}")
    lp = None
    if lpips_vgg or lpips_lin:
        from ..eval.lpips import LPIPS

        lp = LPIPS(lpips_vgg, lpips_lin).eval()
    return Scorer(data, split, n, tuple(cfg.image_size), parser=parser_net, inception=inception_net, lpips=lp,
                  device=device or "cpu")


def _finish(result: dict, name: str, json_out: Optional[Path], work: Path) -> None:
    from ..eval.reporting import markdown_table, write_json

    result = {"command": _command(), **result}
    flat = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
    md = [f"# scadm eval {name}", "", f"Command: `{result['command']}`", ""]
    md += [f"- {k}: {v}" for k, v in flat.items() if k.endswith("protocol")]
    if "measures" in flat:
        md += [f"- measures: {flat['measures']}"]
    cols = [k for k in flat if not k.endswith("protocol") and k not in ("command", "measures")]
    md += ["", markdown_table([{k: flat[k] for k in cols}], cols)]
    if "rows" in result:
        cols = list(result["rows"][0].keys())
        md += ["", markdown_table(result["rows"], cols)]
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{name}.md").write_text("\n".join(md) + "\n")
    write_json(result, work / f"{name}.json")
    if json_out:
        write_json(result, Path(json_out))
    console.print("\n".join(md))


def _protocol_command(name: str):
    def command(
        data: Path = DataOpt,
        model: Optional[Path] = ModelOpt,
        split: str = SplitOpt,
        n: Optional[int] = NOpt,
        out: Path = WorkOpt,
        parser: Optional[Path] = ParserOpt,
        inception: Optional[Path] = InceptionOpt,
        lpips_vgg: Optional[Path] = LpipsVggOpt,
        lpips_lin: Optional[Path] = LpipsLinOpt,
        steps: Optional[int] = StepsOpt,
        steps_list: str = typer.Option("50,100,200,1000", "--steps-list", help="noise: the DDIM step counts.",
                                       callback=checked(_step_list)),
        samples: int = SamplesOpt,
        seed: int = SeedOpt,
        inversion: Optional[str] = ProtocolInversionOpt,
        blend: Optional[bool] = ProtocolBlendOpt,
        json_out: Optional[Path] = JsonOpt,
        device: Optional[str] = DeviceOpt,
    ) -> None:
        from ..config import SamplingOptions
        from ..eval import protocols as P

        # the papers' computation (every image from noise) unless asked; --blend alone inverts as the model does
        sampling = SamplingOptions(steps=steps, seed=seed, inversion=inversion or (None if blend else "none"),
                                   blend=blend)
        try:
            P.sampling_record(model, "noise" if name in ("noise", "diversity") else name, split, sampling)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        scorer = _scorer(model, data, split, n, parser, inception, lpips_vgg, lpips_lin, device)
        work = Path(out)
        if name == "reconstruction":
            result = P.reconstruction_protocol(scorer, data, work, model, sampling, console.print)
        elif name in ("swap", "partial-swap"):
            result = P.swap_protocol(scorer, data, work, model, sampling, partial=name == "partial-swap",
                                     printer=console.print)
        elif name == "noise":
            result = P.noise_protocol(scorer, data, work, model, sampling, steps_list, console.print)
            _plot_noise(result, work)
        else:
            result = P.diversity_protocol(scorer, model, sampling, samples)
        _finish(result, name, json_out, work)

    command.__doc__ = {
        "reconstruction": "SCA-DM Table 1: SSIM, PSNR, FID (or parser-feature FD), mIoU and accuracy.",
        "swap": "Total style swap: quality and mask fidelity.",
        "partial-swap": "Partial swap: quality plus disentanglement (change inside vs outside the swapped part).",
        "noise": "Noise-based generation at several DDIM step counts: quality and time (SCA-DM Fig. 7).",
        "diversity": "Mean pairwise LPIPS (or pixel L1) of samples per mask (multi-conditioning protocol).",
    }[name]
    return command


def _plot_noise(result: dict, work: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    steps = [r["steps"] for r in rows]
    key = "fid" if "fid" in rows[0] else ("parser_fd" if "parser_fd" in rows[0] else None)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=110)
    if key:
        axes[0].plot(steps, [r[key] for r in rows], "o-")
        axes[0].set_ylabel(key)
    axes[1].plot(steps, [r["s_per_image"] for r in rows], "o-")
    axes[1].set_ylabel("seconds per image")
    for ax in axes:
        ax.set_xlabel("DDIM steps")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(work / "noise_steps.png")
    plt.close(fig)


@eval_app.command("conditioning")
def conditioning(
    data: Path = DataOpt,
    model: Optional[Path] = ModelOpt,
    split: str = SplitOpt,
    n: Optional[int] = NOpt,
    out: Path = WorkOpt,
    eta: str = typer.Option("0,1", "--eta", help="DDIM eta values: 0 = 'd.', 1 = 's.'.", callback=checked(_eta_list)),
    classifier: Optional[Path] = InDir(None, "--classifier", help="A `scadm train-classifier` run (attribute accuracy).",
                                       what="classifier run folder"),
    parser: Optional[Path] = ParserOpt,
    inception: Optional[Path] = InceptionOpt,
    lpips_vgg: Optional[Path] = LpipsVggOpt,
    lpips_lin: Optional[Path] = LpipsLinOpt,
    diversity_masks: int = Integer(20, "--diversity-conditions", help="Conditions for the diversity column.", lo=0),
    samples: int = SamplesOpt,
    steps: Optional[int] = StepsOpt,
    seed: int = SeedOpt,
    json_out: Optional[Path] = JsonOpt,
    device: Optional[str] = DeviceOpt,
) -> None:
    """The multi-conditioning paper's Table 4: FID, KID, attribute acc., mask acc., mIoU, LPIPS."""
    from ..config import SamplingOptions
    from ..eval.classifier import load_classifier
    from ..eval.protocols import conditioning_protocol

    scorer = _scorer(model, data, split, n, parser, inception, lpips_vgg, lpips_lin, device)
    clf = load_classifier(classifier).eval() if classifier else None
    rows = []
    for e in eta:
        rows.append(conditioning_protocol(scorer, Path(out), model, SamplingOptions(steps=steps, seed=seed), eta=e,
                                          classifier=clf, diversity_masks=diversity_masks if e == 1.0 else 0,
                                          samples=samples, printer=console.print))
    cols = ["condition", "eta", "fid", "kid", "parser_fd", "attribute_accuracy", "mask_accuracy", "miou",
            "lpips_diversity", "pixel_l1_diversity"]
    cols = [c for c in cols if any(c in r for r in rows)]
    _finish({"rows": [{c: r.get(c, "") for c in cols} for r in rows],
             "protocols": [r["protocol"] for r in rows], "details": rows}, "conditioning", json_out, Path(out))


def register(app: typer.Typer) -> None:
    for name in ("reconstruction", "swap", "partial-swap", "noise", "diversity"):
        eval_app.command(name)(_protocol_command(name))
    app.add_typer(eval_app, name="eval")
