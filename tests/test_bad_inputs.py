"""Bad and unusual input, as a careless user or a hostile file would give it, over every command.

Each case asserts: a non-zero exit code, exactly one line on stderr that starts with "error:",
no traceback, the expected words in that line, nothing on stdout that looks like a traceback,
and that no input file changed (checksums before and after).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model, tiny_faces):
    """A folder of inputs every case may read (and none may change)."""
    import shutil

    root = tmp_path_factory.mktemp("inputs")
    (i0, m0, c0), (i1, m1, _) = tiny_faces[:2]
    for src, name in ((i0, "face.png"), (m0, "mask.png"), (c0, "colour_mask.png"), (i1, "ref.png"), (m1, "ref_mask.png")):
        shutil.copy(src, root / name)
    (root / "empty.png").write_bytes(b"")
    (root / "not_an_image.png").write_text("hello, I am text")
    (root / "truncated.png").write_bytes((root / "face.png").read_bytes()[:60])
    Image.fromarray(np.full((32, 32, 3), (1, 2, 3), np.uint8)).save(root / "odd_colours.png")
    Image.new("RGB", (64, 32)).save(root / "wide.png")
    Image.fromarray(np.full((32, 32), 77, np.uint8)).save(root / "bad_ids.png")
    (root / "a_folder").mkdir()
    (root / "folder.png").mkdir()
    (root / "notes.txt").write_text("not a config")
    (root / "bad.yaml").write_text("training:\n  lr: fast\n")
    (root / "zero_steps.yaml").write_text("training:\n  max_steps: 0\n")
    (root / "negative_export.yaml").write_text("training:\n  export_every: -5\n")
    (root / "nan.yaml").write_text("training:\n  ema_decay: .nan\n")
    (root / "typo.yaml").write_text("training:\n  max_stepz: 10\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "broken.yaml").write_text("training: [unclosed\n")
    model = root / "model"
    shutil.copytree(tiny_model, model)
    empty_weights = root / "model_empty_weights"
    shutil.copytree(tiny_model, empty_weights)
    (empty_weights / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    bad_json = root / "model_bad_json"
    shutil.copytree(tiny_model, bad_json)
    (bad_json / "model_index.json").write_text("{not json")
    junk = root / "model_junk_weights"
    shutil.copytree(tiny_model, junk)
    (junk / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    no_ae = root / "model_no_autoencoder"
    shutil.copytree(tiny_model, no_ae)
    shutil.rmtree(no_ae / "vae")
    data = root / "data"
    (data / "images").mkdir(parents=True)
    return root


def E(root: Path, *names: str) -> list[str]:  # noqa: N802
    return [str(root / n) for n in names]


# (id, argv builder (root -> args), words expected in the error line)
CASES = [
    # --- paths: missing, a folder, empty, not an image, truncated --------------------------------
    ("image missing", lambda r: ["edit", "reconstruct", "--image", r / "nope.png", "--mask", r / "mask.png"], "no such image file"),
    ("image is a folder", lambda r: ["edit", "reconstruct", "--image", r / "a_folder", "--mask", r / "mask.png"], "is a folder"),
    ("image empty", lambda r: ["edit", "reconstruct", "--image", r / "empty.png", "--mask", r / "mask.png"], "is empty"),
    ("image is text", lambda r: ["edit", "reconstruct", "--image", r / "not_an_image.png", "--mask", r / "mask.png"], "not an image file"),
    ("image truncated", lambda r: ["edit", "reconstruct", "--image", r / "truncated.png", "--mask", r / "mask.png"], "truncated or corrupt"),
    ("mask is a folder", lambda r: ["edit", "generate", "--mask", r / "a_folder"], "is a folder"),
    ("mask unknown colours", lambda r: ["edit", "generate", "--mask", r / "odd_colours.png"], "(1, 2, 3)"),
    ("mask bad class ids", lambda r: ["edit", "generate", "--mask", r / "bad_ids.png"], "77"),
    ("mask wrong aspect", lambda r: ["edit", "generate", "--mask", r / "wide.png"], "aspect"),
    ("target mask missing flag", lambda r: ["edit", "swap", "--target", r / "face.png", "--reference", r / "ref.png",
                                            "--reference-mask", r / "ref_mask.png"], "--target-mask"),
    ("reference mask missing flag", lambda r: ["edit", "interpolate", "--target", r / "face.png", "--target-mask", r / "mask.png",
                                               "--reference", r / "ref.png"], "--reference-mask"),
    ("donor missing", lambda r: ["edit", "swap-mask-parts", "--mask", r / "mask.png", "--donor", r / "nope.png", "--parts", "hair"], "no such mask file"),
    ("edit-mask new mask empty", lambda r: ["edit", "edit-mask", "--image", r / "face.png", "--mask", r / "mask.png",
                                            "--new-mask", r / "empty.png"], "is empty"),
    # --- the model folder ------------------------------------------------------------------------
    ("model is a file", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--model", r / "face.png"], "is a file"),
    ("model missing", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--model", r / "nope"], "no such model folder"),
    ("model not a model", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--model", r / "a_folder"], "not a scadm model folder"),
    ("model empty weights", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--model", r / "model_empty_weights"], "is empty"),
    ("model bad config json", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--model", r / "model_bad_json"], "model_index.json: not valid JSON"),
    ("model junk weights", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--model", r / "model_junk_weights"], "cannot read weights"),
    ("model no autoencoder", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--model", r / "model_no_autoencoder"], "autoencoder"),
    # --- numbers ---------------------------------------------------------------------------------
    ("steps zero", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--steps", "0"], "--steps 0"),
    ("steps negative", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--steps", "-5"], "--steps -5"),
    ("steps not a number", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--steps", "ten"], "--steps"),
    ("guidance nan", lambda r: ["edit", "reconstruct", "--image", r / "face.png", "--mask", r / "mask.png", "--guidance-scale", "nan"], "finite"),
    ("guidance inf", lambda r: ["edit", "reconstruct", "--image", r / "face.png", "--mask", r / "mask.png", "--guidance-scale", "inf"], "finite"),
    ("guidance huge", lambda r: ["edit", "reconstruct", "--image", r / "face.png", "--mask", r / "mask.png", "--guidance-scale", "1e30"], "[0, 10000]"),
    ("guidance negative", lambda r: ["edit", "reconstruct", "--image", r / "face.png", "--mask", r / "mask.png", "-s", "-1"], "[0, 10000]"),
    ("eta nan", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--eta", "nan"], "--eta"),
    ("eta above one", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--eta", "2"], "[0, 1]"),
    ("n zero", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--n", "0"], "--n 0"),
    ("seed negative", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--seed", "-1"], "--seed"),
    ("alphas not numbers", lambda r: ["edit", "interpolate", "--target", r / "face.png", "--target-mask", r / "mask.png",
                                      "--reference", r / "ref.png", "--reference-mask", r / "ref_mask.png", "--alphas", "a,b"], "--alphas"),
    ("alphas nan", lambda r: ["edit", "interpolate", "--target", r / "face.png", "--target-mask", r / "mask.png",
                              "--reference", r / "ref.png", "--reference-mask", r / "ref_mask.png", "--alphas", "0,nan"], "--alphas"),
    # --- choices and names -----------------------------------------------------------------------
    ("sampler unknown", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--sampler", "euler"], "ddim, ddpm, dpm++"),
    ("null condition unknown", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--null-condition", "zeros"], "--null-condition"),
    ("part unknown", lambda r: ["edit", "swap", "--target", r / "face.png", "--target-mask", r / "mask.png", "--reference",
                                r / "ref.png", "--reference-mask", r / "ref_mask.png", "--parts", "beard"], "beard"),
    ("attribute spec", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--set", "Smiling=yes"], "--set"),
    ("attributes on a style model", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--set", "Smiling=1"], "takes no attributes"),
    ("device cuda", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--device", "cuda"], "available: cpu"),
    ("device nonsense", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--device", "gpu0"], "no such device"),
    ("unknown option", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--guidance", "2"], "No such option"),
    ("unknown command", lambda r: ["edit", "swapp"], "No such command"),
    # --- outputs -----------------------------------------------------------------------------------
    ("out is an input", lambda r: ["edit", "reconstruct", "--image", r / "face.png", "--mask", r / "mask.png", "--out", r / "face.png"], "also an input"),
    ("out below a file", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--out", r / "face.png" / "x.png"], "is a file"),
    ("out png is a folder", lambda r: ["edit", "generate", "--mask", r / "mask.png", "--out", r / "folder.png"], "is a folder"),
    # --- training ------------------------------------------------------------------------------------
    ("train config type", lambda r: ["train", "--config", r / "bad.yaml", "--data", r / "data", "--out", r / "runs_x"], "training.lr: expected a number"),
    ("train config zero steps", lambda r: ["train", "--config", r / "zero_steps.yaml", "--data", r / "data", "--out", r / "runs_x"], "max_steps"),
    ("train config negative export_every", lambda r: ["train", "--config", r / "negative_export.yaml", "--data", r / "data",
                                                      "--out", r / "runs_x"], "export_every"),
    ("train config nan", lambda r: ["train", "--config", r / "nan.yaml", "--data", r / "data", "--out", r / "runs_x"], "finite"),
    ("train config typo", lambda r: ["train", "--config", r / "typo.yaml", "--data", r / "data", "--out", r / "runs_x"], "max_stepz"),
    ("train config a list", lambda r: ["train", "--config", r / "list.yaml", "--data", r / "data", "--out", r / "runs_x"], "mapping"),
    ("train config broken yaml", lambda r: ["train", "--config", r / "broken.yaml", "--data", r / "data", "--out", r / "runs_x"], "cannot parse"),
    ("train config unknown preset", lambda r: ["train", "--config", "paper-512", "--data", r / "data", "--out", r / "runs_x"], "presets"),
    ("train max steps zero", lambda r: ["train", "--config", "tiny", "--data", r / "data", "--out", r / "runs_x", "--max-steps", "0"], "--max-steps 0"),
    ("train max steps negative", lambda r: ["train", "--config", "tiny", "--data", r / "data", "--out", r / "runs_x", "--max-steps", "-3"], "--max-steps -3"),
    ("train out is a file", lambda r: ["train", "--config", "tiny", "--data", r / "data", "--out", r / "notes.txt"], "is a file"),
    ("train data missing", lambda r: ["train", "--config", "tiny", "--data", r / "nope", "--out", r / "runs_x"], "no such dataset folder"),
    ("train autoencoder missing", lambda r: ["train", "--config", "tiny", "--data", r / "data", "--out", r / "runs_x",
                                             "--autoencoder", r / "nope"], "no such first-stage folder"),
    ("train-autoencoder data is a file", lambda r: ["train-autoencoder", "--config", "tiny", "--data", r / "face.png", "--out", r / "runs_x"], "is a file"),
    ("train-parser lr nan", lambda r: ["train-parser", "--data", r / "data", "--lr", "nan"], "--lr"),
    ("train-classifier init missing", lambda r: ["train-classifier", "--data", r / "data", "--init", r / "nope.pth"], "no such weight file"),
    # --- data ------------------------------------------------------------------------------------------
    ("synth n zero", lambda r: ["synth", "--n", "0", "--out", r / "synth_x"], "--n 0"),
    ("synth size junk", lambda r: ["synth", "--size", "big", "--out", r / "synth_x"], "--size"),
    ("synth size tiny", lambda r: ["synth", "--size", "2", "--out", r / "synth_x"], "--size"),
    ("synth test fraction", lambda r: ["synth", "--test-fraction", "1.5", "--out", r / "synth_x"], "[0, 1]"),
    ("prepare folder missing", lambda r: ["prepare", "folder", r / "nope", r / "a_folder", r / "prep_x"], "no such image folder"),
    ("prepare out is a file", lambda r: ["prepare", "folder", r / "a_folder", r / "a_folder", r / "notes.txt"], "is a file"),
    ("prepare label set missing", lambda r: ["prepare", "folder", r / "a_folder", r / "a_folder", r / "prep_x", "--labels", r / "nope.json"], "nope.json"),
    ("prepare celeba not a release", lambda r: ["prepare", "celebamask-hq", r / "a_folder", r / "prep_x"], "CelebA"),
    ("prepare celeba split", lambda r: ["prepare", "celebamask-hq", r / "a_folder", r / "prep_x", "--split", "random"], "--split"),
    ("labels unknown set", lambda r: ["labels", "--labels", "celebamask"], "celebamask"),
    # --- evaluation and sampling --------------------------------------------------------------------------
    ("eval synthetic n", lambda r: ["eval", "synthetic", "--n", "1"], "--n 1"),
    ("eval synthetic steps", lambda r: ["eval", "synthetic", "--steps", "0"], "--steps 0"),
    ("eval timing steps zero", lambda r: ["eval", "timing", "--steps", "0"], "--steps"),
    ("eval timing steps text", lambda r: ["eval", "timing", "--steps", "abc"], "not a whole number"),
    ("eval reconstruction data missing", lambda r: ["eval", "reconstruction", "--data", r / "nope"], "no such dataset folder"),
    ("eval conditioning eta", lambda r: ["eval", "conditioning", "--data", r / "data", "--eta", "0,x"], "--eta"),
    ("eval parser missing", lambda r: ["eval", "synthetic", "--parser", r / "nope.pth"], "no such file"),
    ("eval json is a folder", lambda r: ["eval", "timing", "--json", r / "a_folder"], "is a folder"),
    ("sample mode", lambda r: ["sample", "--data", r / "data", "--out", r / "samples_x", "--mode", "everything"], "--mode"),
    ("sample limit zero", lambda r: ["sample", "--data", r / "data", "--out", r / "samples_x", "--limit", "0"], "--limit 0"),
    ("info unknown preset", lambda r: ["info", "--config", "paper-1024"], "presets"),
    ("demo faces", lambda r: ["demo", "--metric-faces", "0"], "--metric-faces 0"),
]


@pytest.mark.parametrize("case_id, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(case_id, argv, words, inputs, run_cli, tmp_path):
    before = _digest(inputs)
    args = [str(a) for a in argv(inputs)]
    if args[0] == "edit" and len(args) > 2 and "--out" not in args:
        args += ["--out", str(tmp_path / "out.png")]
    if args[0] == "edit" and "--model" not in args and len(args) > 2:
        args += ["--model", str(inputs / "model")]
    args += [] if args[0] not in ("edit",) or "--steps" in args else ["--steps", "2"]
    r = run_cli(*args)
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert r.code != 0, f"{case_id}: exit 0\n{r.out}\n{r.err}"
    assert len(lines) == 1 and lines[0].startswith("error:"), f"{case_id}: {r.err!r}"
    assert "Traceback" not in r.err + r.out, case_id
    assert words in lines[0], f"{case_id}: {words!r} not in {lines[0]!r}"
    assert _digest(inputs) == before, f"{case_id}: an input changed"
    assert not list(inputs.glob("runs_x*")) and not list(inputs.glob("synth_x")) and not list(inputs.glob("prep_x"))


def test_the_table_is_big_enough():
    assert len(CASES) >= 50


def test_every_option_has_help_and_required_ones_are_marked():
    import typer

    from scadm.cli import app

    root = typer.main.get_command(app)

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    missing, seen = [], 0
    for path, cmd in walk(root, ["scadm"]):
        seen += 1
        for p in cmd.params:
            if p.name == "help" or getattr(p, "hidden", False):
                continue
            if not getattr(p, "help", None) and p.param_type_name != "argument":
                missing.append(f"{' '.join(path)} {p.opts[0]}")
    assert seen >= 25, seen  # every command was visited
    assert not missing, f"options without help: {missing}"


def test_messages_with_brackets_print_them(run_cli, monkeypatch, capsys):
    """Errors and warnings are printed as text, not as console markup: `scadm[app]`, `[1, 10000]` and
    `[red]` reach the user as written (the missing-gradio message is the case users meet)."""
    import builtins
    import warnings as w

    from scadm.cli.common import UserError, fail, show_warnings_as_lines

    real_import = builtins.__import__

    def no_gradio(name, *a, **k):
        if name == "gradio" or name.startswith("gradio."):
            raise ImportError("No module named 'gradio'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_gradio)
    r = run_cli("app", "--port", "7999")
    assert r.code == 1 and "pip install 'scadm[app]'" in r.err, r.err
    monkeypatch.setattr(builtins, "__import__", real_import)
    with pytest.raises(SystemExit):
        fail(UserError("steps must be in [1, 10000]; see [red] and scadm[app]"))
    monkeypatch.setattr(w, "showwarning", w.showwarning)  # restored after the test
    show_warnings_as_lines()
    with w.catch_warnings():
        w.simplefilter("always")
        w.warn("a [bold]bracketed[/bold] warning")
    err = capsys.readouterr().err
    assert "steps must be in [1, 10000]; see [red] and scadm[app]" in err
    assert "a [bold]bracketed[/bold] warning" in err


def test_an_unexpected_failure_is_one_line_naming_the_command(run_cli, inputs, tmp_path, monkeypatch):
    """Any internal error reaches the user as: what failed, the exception type and message, and --debug."""
    import scadm.pipeline as pipeline

    def broken(*a, **k):
        raise RuntimeError("the sampler fell over")

    monkeypatch.setattr(pipeline.SCADMPipeline, "generate_from_conditions", broken)
    for argv in (["edit", "reconstruct", "--image", inputs / "face.png", "--mask", inputs / "mask.png"],
                 ["edit", "generate", "--mask", inputs / "mask.png"],
                 ["edit", "swap", "--target", inputs / "face.png", "--target-mask", inputs / "mask.png",
                  "--reference", inputs / "ref.png", "--reference-mask", inputs / "ref_mask.png"]):
        r = run_cli(*argv, "--model", inputs / "model", "--out", tmp_path / "o.png", "--steps", "2")
        lines = r.err.strip().splitlines()
        assert r.code == 1 and len(lines) == 1, r.err
        assert lines[0] == (f"error: scadm edit {argv[1]} failed unexpectedly: RuntimeError: the sampler fell over "
                            "(run with --debug for the traceback)")
    r = run_cli("--debug", "edit", "generate", "--mask", inputs / "mask.png", "--model", inputs / "model",
                "--out", tmp_path / "o.png", "--steps", "2")
    assert r.code == 1 and "Traceback" in r.err and "the sampler fell over" in r.err


#: every command, and a function it surely calls, broken for the test below
BROKEN = [
    (["synth", "--n", "2", "--size", "32", "--out", "{tmp}/s"], "scadm.data.synthetic", "write_synthetic_dataset"),
    (["labels"], "scadm.labels", "get_label_set"),
    (["info", "--config", "tiny"], "scadm.cli.model", "parameter_report"),
    (["prepare", "folder", "{inputs}/a_folder", "{inputs}/a_folder", "{tmp}/p"], "scadm.data.prepare", "prepare_folder"),
    (["prepare", "celebamask-hq", "{inputs}/a_folder", "{tmp}/p"], "scadm.data.prepare", "prepare_celebamask_hq"),
    (["train", "--config", "tiny", "--data", "{inputs}/data", "--out", "{tmp}/r"], "scadm.train.diffusion", "train_diffusion"),
    (["train-autoencoder", "--config", "tiny", "--data", "{inputs}/data", "--out", "{tmp}/r"],
     "scadm.train.autoencoder", "train_autoencoder"),
    (["train-parser", "--data", "{inputs}/data", "--out", "{tmp}/r"], "scadm.train.parser", "train_parser"),
    (["train-classifier", "--data", "{inputs}/data", "--out", "{tmp}/r"], "scadm.train.classifier", "train_classifier"),
    (["sample", "--data", "{inputs}/data", "--out", "{tmp}/r"], "scadm.sampling_jobs", "run_sampling_job"),
    (["demo", "--out", "{tmp}/d"], "scadm.demo", "run_demo"),
    (["edit", "mix", "--mask", "{inputs}/mask.png", "--reference", "{inputs}/ref.png", "--reference-mask",
      "{inputs}/ref_mask.png", "--parts", "hair", "--out", "{tmp}/o.png"], "scadm.pipeline", "SCADMPipeline.from_pretrained"),
    (["edit", "edit-mask", "--image", "{inputs}/face.png", "--mask", "{inputs}/mask.png", "--new-mask",
      "{inputs}/ref_mask.png", "--out", "{tmp}/o.png"], "scadm.pipeline", "SCADMPipeline.from_pretrained"),
    (["edit", "swap-mask-parts", "--mask", "{inputs}/mask.png", "--donor", "{inputs}/ref_mask.png", "--parts", "hair",
      "--out", "{tmp}/o.png"], "scadm.pipeline", "SCADMPipeline.from_pretrained"),
    (["edit", "interpolate", "--target", "{inputs}/face.png", "--target-mask", "{inputs}/mask.png", "--reference",
      "{inputs}/ref.png", "--reference-mask", "{inputs}/ref_mask.png", "--out", "{tmp}/o.png"],
     "scadm.pipeline", "SCADMPipeline.from_pretrained"),
    (["eval", "synthetic", "--n", "2"], "scadm.pipeline", "SCADMPipeline.from_pretrained"),
    (["eval", "timing", "--steps", "1"], "scadm.eval.protocols", "timing_protocol"),
    (["eval", "reconstruction", "--data", "{inputs}/data"], "scadm.cli.eval_cmds", "_scorer"),
    (["eval", "noise", "--data", "{inputs}/data"], "scadm.cli.eval_cmds", "_scorer"),
    (["eval", "conditioning", "--data", "{inputs}/data"], "scadm.cli.eval_cmds", "_scorer"),
]


@pytest.mark.parametrize("argv, module, name", BROKEN, ids=[" ".join(b[0][:2]) for b in BROKEN])
def test_every_command_shows_an_internal_failure_as_one_line(argv, module, name, inputs, run_cli, monkeypatch, tmp_path):
    import importlib

    def broken(*a, **k):
        raise RuntimeError("deep inside")

    owner = importlib.import_module(module)
    *path, attr = name.split(".")
    for part in path:
        owner = getattr(owner, part)
    monkeypatch.setattr(owner, attr, broken)
    args = [a.format(tmp=tmp_path, inputs=inputs) for a in argv]
    r = run_cli(*args)
    lines = r.err.strip().splitlines()
    words = " ".join(a for a in args[:2] if not a.startswith("-"))
    assert r.code == 1 and len(lines) == 1 and "Traceback" not in r.err, r.err
    assert lines[0] == (f"error: scadm {words} failed unexpectedly: RuntimeError: deep inside "
                        "(run with --debug for the traceback)"), lines[0]
