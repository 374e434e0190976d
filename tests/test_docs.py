"""The docs run: every `scadm ...` command written in the README and docs/ names a real command and
real options, and the cheap ones run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from scadm.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _command_lines() -> list[tuple[str, str]]:
    """(where, command line) for each `scadm` command in a fenced block or in inline code."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        for block in fenced:
            block = re.sub(r"\\\n\s*", " ", block)  # line continuations
            for line in block.splitlines():
                line = re.sub(r"^\$\s*", "", line.strip())
                m = re.search(r"(?:^|-m\s+)(scadm\s+[a-z].*)$", line)
                if m:
                    found.append((doc.name, m.group(1)))
        outside = re.sub(r"```.*?```", "", text, flags=re.S)
        for span in re.findall(r"`(scadm [a-z][^`]*)`", outside):
            found.append((doc.name, span))
    return found


def _tokens(line: str) -> list[str]:
    line = line.split("  #")[0].split(" # ")[0]
    line = re.split(r"\s{3,}", line)[0]  # a diagram's words after a wide gap are not the command
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    return [w.strip("[]") for w in words[1:]]


ROOT_COMMAND = typer.main.get_command(app)


def _is_group(cmd) -> bool:
    return hasattr(cmd, "commands")


def _resolve(words: list[str]) -> tuple[list, list[str]]:
    """The command(s) the words name (several for `scadm edit ... --x`), and the remaining words."""
    cmds = [ROOT_COMMAND]
    rest = list(words)
    while rest and all(_is_group(c) for c in cmds):
        word = rest[0]
        if word == "...":
            cmds = [sub for c in cmds for sub in c.commands.values()]
        elif word.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break
        else:
            subs = [c.commands[word] for c in cmds if word in c.commands]
            if not subs:
                raise AssertionError(f"no command {word!r}")
            cmds = subs
        rest.pop(0)
    return cmds, rest


LINES = _command_lines()


def test_the_docs_name_commands():
    assert len(LINES) >= 30


@pytest.mark.parametrize("where, line", LINES, ids=[f"{w}: {ln[:60]}" for w, ln in LINES])
def test_each_documented_command_and_option_exists(where, line):
    words = _tokens(line)
    cmds, rest = _resolve(words)
    leaves = [c for c in cmds if not _is_group(c)]
    if not leaves:
        return  # a group named on its own (`scadm edit`)
    options = {o for c in leaves for p in c.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}
    for w in rest:
        if w.startswith("--") or re.fullmatch(r"-[a-z]", w):
            flag = w.split("=")[0]
            assert flag in options, f"{where}: `{line}` uses {flag}, which {' / '.join(c.name for c in leaves)} does not have"


def _cheap(words: list[str]) -> bool:
    """Runs in a second with nothing but the package: the label table, a preset's parameter counts."""
    return words == ["labels"] or (words[:2] == ["info", "--config"] and len(words) == 3 and "<" not in words[2])


CHEAP = sorted({" ".join(_tokens(line)) for _, line in LINES if _cheap(_tokens(line))})


@pytest.mark.parametrize("words", CHEAP)
def test_the_cheap_documented_commands_run(words, run_cli):
    assert CHEAP, "the docs show no cheap command"
    r = run_cli(*words.split())
    assert r.code == 0, r.err


@pytest.mark.parametrize("path", sorted({" ".join(w for w in _tokens(line)[:2] if re.fullmatch(r"[a-z][a-z0-9-]*", w))
                                         for _, line in LINES} - {""}))
def test_every_documented_command_has_help(path, run_cli):
    words = path.split()
    cmds, _ = _resolve(words)
    r = run_cli(*[c for c in words if c], "--help")
    assert r.code == 0 and "Usage" in r.out, r.err


def test_the_readme_diffusers_example_runs(tmp_path, monkeypatch):
    """The README's "Use it like any diffusers pipeline" example, run as written in an empty folder."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Use it like any diffusers pipeline", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102 - the project's own docs
    assert (tmp_path / "hair.png").is_file() and (tmp_path / "my-model" / "model_index.json").is_file()
    from scadm.pipeline import SCADMPipeline

    saved = SCADMPipeline.from_pretrained(tmp_path / "my-model", device="cpu")
    kw = saved.scheduler_kwargs("dpm++")  # the swapped scheduler's spacing is the saved model's
    assert kw["use_karras_sigmas"] is True and not kw.get("use_lu_lambdas", False)
