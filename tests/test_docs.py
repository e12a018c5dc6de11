"""The front door stays true: the docs site builds in strict mode, every shell block of README.md, BENCHMARKS.md and
docs/*.md is either run here on tiny data or marked as needing real data, a GPU, the network or minutes (and then
at least names scripts, options and make targets that exist), bench scripts' docstrings agree with the commands the
benchmark tables give, and no tracked file names an absolute path of one machine.

Markers (an HTML comment on the line before a ```bash block; docs/development.md explains them):

    <!-- run -->                          run as written in a scratch folder (tiny demo data and model in place)
    <!-- run: A => B; C => D -->          the same after replacing each text A by B (tiny sizes)
    <!-- needs: real-data, gpu, network, minutes -->   not run; scripts, options and make targets checked
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path

import pytest

from tests.tiny_data import TINY_DEMO_ARGS

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "BENCHMARKS.md", *(REPO / "docs").glob("*.md")])
NEEDS = {"real-data", "gpu", "network", "minutes"}
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*(run|needs)\s*(?::\s*(.*?))?\s*-->\s*$")
SHELL = {"bash", "sh", "shell"}
#: What the scratch folder holds from the repository (links), besides the tiny demo data and model.
SANDBOX_LINKS = ("src", "bench", "train_script.py", "compute_scores.py", "predict.py", "Makefile")
#: The tiny demo the run blocks start from: data/synthetic and safetensors/galaxy_demo (also as galaxy_field).
TINY_DEMO = [*TINY_DEMO_ARGS, "--quiet"]

# Absolute paths into workspace, temporary, home and root folders: a path of one machine means nothing on another.
# Built from pieces, so that this file does not match its own scan.
_ROOTS = ["work", "tmp", "home", "root", "Users"]
ABSOLUTE_PATH = re.compile(r"(?<![\w.\-/~])(?:" + "|".join("/" + r + "/" for r in _ROOTS) + r"|[A-Z]:\\)")
#: (file, text of the line that may hold such a path, why).
ALLOWED_PATHS: list[tuple[str, str, str]] = []


# ------------------------------------------------------------------------------------------------ blocks
def shell_blocks(page: Path) -> list[dict]:
    """Every ```bash block of ``page``: its text, line number and marker (``kind`` run / needs / None)."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) in SHELL:
            previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(previous.strip())
            blocks.append(
                {
                    "page": page,
                    "line": i + 1,
                    "text": "\n".join(lines[i + 1 : end]) + "\n",
                    "kind": marker.group(1) if marker else None,
                    "arg": (marker.group(2) or "") if marker else "",
                }
            )
        i = end + 1
    return blocks


def table_commands(page: Path) -> list[str]:
    """Commands given inline in the ``| command | ... |`` rows of the benchmark tables."""
    found = []
    for line in page.read_text().splitlines():
        if line.startswith("| command |"):
            found += [c for c in re.findall(r"`([^`]+)`", line) if c.split()[0] in ("python", "time")]
    return found


def substitutions(arg: str) -> list[tuple[str, str]]:
    pairs = []
    for part in filter(None, (p.strip() for p in arg.split(";"))):
        old, sep, new = part.partition("=>")
        assert sep, f"a run marker's replacement needs 'A => B': {part!r}"
        pairs.append((old.strip(), new.strip()))
    return pairs


def commands(text: str) -> list[list[str]]:
    """Each command of a shell block as tokens (continuations joined, comments and redirections dropped)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        for i, token in enumerate(tokens):
            if token in (">", ">>", "<", "|", "&&", ";", "2>", "2>&1"):
                tokens = tokens[:i]
                break
        if tokens:
            out.append(tokens)
    return out


def target_of(tokens: list[str]) -> tuple[str, str, list[str]] | None:
    """(kind, name, its arguments) of a command: ("module", "src.x", …), ("script", "bench/x.py", …),
    ("make", "target", …); None for ``python -c``."""
    while tokens and tokens[0] in ("time", "/usr/bin/time", "nice"):
        tokens = tokens[1:]
    program = tokens[0]
    if program == "make":
        return "make", (tokens[1] if len(tokens) > 1 else "install"), tokens[2:]
    if program in ("accelerate", "torchrun"):
        script = next(i for i, t in enumerate(tokens) if t.endswith(".py"))
        return "script", tokens[script], tokens[script + 1 :]
    assert Path(program).name.startswith("python"), f"unknown program {program!r} in {' '.join(tokens)}"
    if tokens[1] == "-c":
        return None
    if tokens[1] == "-m":
        return "module", tokens[2], tokens[3:]
    return "script", tokens[1], tokens[2:]


@cache
def help_text(kind: str, name: str) -> str:
    """The ``--help`` of a script or module, run in this process (one import of torch for all of them)."""
    out = io.StringIO()
    argv, cwd, path = sys.argv, os.getcwd(), list(sys.path)
    try:
        os.chdir(REPO)
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop, warnings.catch_warnings():
            # runpy warns when a module it runs as __main__ was imported before (by an earlier --help): harmless here
            warnings.simplefilter("ignore", RuntimeWarning)
            if kind == "module":
                sys.argv = [name, "--help"]
                runpy.run_module(name, run_name="__main__", alter_sys=True)
            else:
                sys.argv = [str(REPO / name), "--help"]
                runpy.run_path(str(REPO / name), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = argv, path
        os.chdir(cwd)
    assert stop.value.code in (0, None), f"{name} --help exited with {stop.value.code}"
    return out.getvalue()


def check_command(tokens: list[str]) -> None:
    target = target_of(tokens)
    if target is None:
        return
    kind, name, args = target
    if kind == "make":
        assert re.search(rf"^{re.escape(name)}:", (REPO / "Makefile").read_text(), re.M), f"no make target {name}"
        return
    if kind == "script":
        assert (REPO / name).is_file(), f"no script {name}"
    elif not name.startswith("src."):  # another tool (pip, venv, mkdocs): installed is all we check
        assert importlib.util.find_spec(name) is not None, f"module {name} is not installed"
        return
    text = help_text(kind, name)
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"{name} --help has no {option}"


def all_blocks() -> list[dict]:
    return [b for page in PAGES for b in shell_blocks(page)]


def block_id(block: dict) -> str:
    return f"{block['page'].relative_to(REPO)}:{block['line']}"


# ------------------------------------------------------------------------------------------------- tests
def test_the_site_builds_in_strict_mode(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "WARNING" not in build.stderr, build.stderr
    pages = {p.parent.name for p in (tmp_path / "site").glob("*/index.html")}
    assert {
        "install",
        "data",
        "synthetic",
        "training",
        "scoring",
        "prediction",
        "fields",
        "reproducing",
        "results",
        "results-history",
        "development",
        "api",
        "benchmarks",
    } <= pages
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in (
        "src.inference.segmentation.segment",
        "src.inference.predict.predict",
        "src.field.run.predict_field",
        "src.evaluation.evaluate.evaluate",
        "src.evaluation.evaluators.DatasetEvaluator",
        "src.inference.objects.find_objects",
        "src.evaluation.metrics.original_ap",
        "src.synthetic.generate",
    ):
        assert f'id="{name}"' in api, name  # rendered from the docstring, not a dangling reference
    assert "Run the model on RGB images" in api


def test_the_readme_is_short_and_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    first = shell_blocks(REPO / "README.md")[0]["text"]
    assert [c[:2] for c in commands(first)] == [["make", "demo"], ["make", "test"]]
    head = readme[: readme.index("## Documentation")]
    for needle in ("--field", "fits", "predict.py", "real** GZ2", "**synthetic**"):
        assert needle in head, needle


def test_every_shell_block_is_run_or_marked():
    blocks = all_blocks()
    assert len(blocks) > 20
    unmarked = [block_id(b) for b in blocks if b["kind"] is None]
    assert not unmarked, f"shell blocks without <!-- run --> or <!-- needs: ... -->: {unmarked}"
    for block in blocks:
        if block["kind"] == "needs":
            reasons = {r.strip() for r in block["arg"].split(",")}
            assert reasons and reasons <= NEEDS, f"{block_id(block)}: unknown needs {reasons - NEEDS}"
        else:
            for old, _ in substitutions(block["arg"]):
                assert old in block["text"], f"{block_id(block)}: {old!r} is not in the block"


@pytest.mark.parametrize("block", [b for b in all_blocks() if b["kind"] == "needs"], ids=block_id)
def test_marked_commands_name_real_scripts_and_options(block):
    for tokens in commands(block["text"]):
        check_command(tokens)


def test_benchmark_table_commands_agree_with_the_scripts():
    """Each command of a benchmark table names a script, options of its --help, and options its docstring gives."""
    cmds = table_commands(REPO / "BENCHMARKS.md")
    scripts = {target_of(shlex.split(c))[1] for c in cmds if c.split()[0] == "python"}
    documented = {f"bench/{p.name}" for p in (REPO / "bench").glob("*.py")} - {"bench/real_scale.py"}
    assert documented <= scripts, f"bench scripts without a table: {sorted(documented - scripts)}"
    bench_commands = cmds + [" ".join(t) for b in all_blocks() for t in commands(b["text"])]
    for command in bench_commands:
        tokens = shlex.split(command)
        if tokens[0] != "python" or not tokens[1].startswith("bench/"):
            continue
        check_command(tokens)
        doc = (REPO / tokens[1]).read_text().split('"""')[1]
        for option in (t.split("=")[0] for t in tokens[2:] if t.startswith("--")):
            assert option in doc, f"{tokens[1]}: its docstring does not give {option}, which BENCHMARKS.md uses"


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """A scratch folder with the tiny demo's data and model, made once: what the run blocks start from."""
    base = tmp_path_factory.mktemp("tiny_demo")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.demo",
            *TINY_DEMO,
            "--data-root",
            str(base / "data" / "synthetic"),
            "--output",
            str(base / "safetensors" / "galaxy_demo"),
        ],
        cwd=REPO,
        env=sandbox_env(base),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return base


def python_shim(path: Path) -> None:
    """An executable at ``path`` that runs this interpreter (a symlink would lose the virtual environment, which
    Python finds beside the path it was started from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    path.chmod(0o755)


def sandbox_env(folder: Path) -> dict:
    shim = folder / "bin"
    for name in ("python", "python3"):
        python_shim(shim / name)
    return {
        **os.environ,
        "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(REPO),
    }


RUN_PAGES = [p for p in PAGES if any(b["kind"] == "run" for b in shell_blocks(p))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_run_blocks_work_on_tiny_data(page, tiny_demo, tmp_path):
    """The page's run blocks, in order, in one scratch folder: the repository's code, the tiny demo data
    (copied: blocks may write into it) and the tiny demo model (also standing in for a field model)."""
    for name in SANDBOX_LINKS:
        (tmp_path / name).symlink_to(REPO / name)
    shutil.copytree(tiny_demo / "data", tmp_path / "data")
    models = tmp_path / "safetensors"
    models.mkdir()
    for name in ("galaxy_demo", "galaxy_field"):
        (models / name).symlink_to(tiny_demo / "safetensors" / "galaxy_demo")
    python_shim(tmp_path / ".venv" / "bin" / "python")
    env = sandbox_env(tmp_path)
    for block in (b for b in shell_blocks(page) if b["kind"] == "run"):
        text = block["text"]
        for old, new in substitutions(block["arg"]):
            text = text.replace(old, new)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", text], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, (
            f"{block_id(block)} failed:\n{text}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    files = []
    for name in filter(None, listed.stdout.split("\0")):
        path = REPO / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def test_no_tracked_file_names_a_path_of_one_machine():
    found = []
    for path in tracked_text_files():
        rel = path.relative_to(REPO).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ABSOLUTE_PATH.search(line) and not any(rel == f and text in line for f, text, _ in ALLOWED_PATHS):
                found.append(f"{rel}:{number}: {line.strip()[:120]}")
    assert not found, (
        "absolute paths of one machine (use a relative path, or add to ALLOWED_PATHS with a reason):\n"
        + "\n".join(found)
    )


def test_the_path_scan_sees_what_it_looks_for():
    for bad in ("see " + "/" + "tmp/heavy.lock", "model " + "/" + "work/artifacts/x", "C:" + "\\Users\\me"):
        assert ABSOLUTE_PATH.search(bad), bad
    for fine in ("data/" + "tmp/x", "../shared/real", "https://example.org/" + "home/x", "safetensors/galaxy_demo"):
        assert not ABSOLUTE_PATH.search(fine), fine


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_docs_and_make_figures_run_what_the_pages_say():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def dry(target):
        return subprocess.run(
            ["make", "--no-print-directory", "-n", target, "PY=VENV_PYTHON"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert "VENV_PYTHON -m mkdocs build --strict --site-dir site" in dry("docs")
    figures = dry("figures")
    assert "VENV_PYTHON -m src.demo --readme-figures" in figures  # the only target that writes into images/
    assert "VENV_PYTHON -m src.synthetic.figure" in figures
    assert "--readme-figures" not in dry("demo") and "site" in (REPO / ".gitignore").read_text()


def test_each_benchmark_has_its_table():
    """BENCHMARKS.md: one section per benchmark, each with what it measures, the command, the machine and load,
    the figure and the date."""
    sections = (REPO / "BENCHMARKS.md").read_text().split("\n## ")[1:]
    assert len(sections) >= 10
    for section in sections:
        rows = re.findall(r"^\| (measures|command|machine, load|figure|date) \| (.+) \|$", section, re.M)
        assert [k for k, _ in rows] == ["measures", "command", "machine, load", "figure", "date"], section[:60]
        assert re.search(r"\d{4}-\d{2}-\d{2}", dict(rows)["date"]), section[:60]
