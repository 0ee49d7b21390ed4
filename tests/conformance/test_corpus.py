"""Every script of the corpus passes; every deliberately broken script fails (the runner must
not be able to pass a wrong stack)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from usernet.drill import Result, ScriptError, parse_script, run_script

HERE = os.path.dirname(__file__)
CORPUS = sorted(glob.glob(os.path.join(HERE, "*.pkt")))
BROKEN = sorted(glob.glob(os.path.join(HERE, "broken", "*.pkt")))


def run(path: str, **kw):  # type: ignore[no-untyped-def]
    with open(path) as f:
        text = f.read()
    try:
        script = parse_script(text, path)
    except ScriptError as err:  # as the CLI: a script that does not parse fails at its line
        return Result(path, False, err.line, str(err))
    return run_script(script, **kw)


def script_args(path: str) -> dict[str, bool]:
    """A "// ARGS: --relaxed --strict-asserts" line among a script's first comment lines gives
    the runner options it is run with (broken scripts that guard a relaxed rule use it)."""
    options: dict[str, bool] = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("//"):
                break
            if line.startswith("// ARGS:"):
                for arg in line.split(":", 1)[1].split():
                    assert arg in ("--relaxed", "--strict-asserts"), arg
                    options[arg[2:].replace("-", "_")] = True
    return options


@pytest.mark.parametrize("path", CORPUS, ids=[os.path.basename(p) for p in CORPUS])
def test_corpus_script_passes(path: str) -> None:
    # strict_asserts: an assertion of ours that cannot be evaluated is a bug of the script
    result = run(path, strict_asserts=True)
    assert result.passed, f"{os.path.basename(path)}:{result.line}: {result.message}"


@pytest.mark.parametrize("path", BROKEN, ids=[os.path.basename(p) for p in BROKEN])
def test_broken_script_fails(path: str) -> None:
    options = script_args(path)
    result = run(path, **options)
    assert not result.passed, f"{os.path.basename(path)} passed but is wrong on purpose"
    with open(path) as f:
        first = f.readline()
    # The first line names the line that must be reported: "// FAIL AT LINE N"
    if first.startswith("// FAIL AT LINE"):
        assert result.line == int(first.split()[-1]), result.message
    if options.get("relaxed"):  # wrong under --relaxed, so wrong without it too
        assert not run(path).passed


def test_cli_prints_one_line_per_script_and_a_summary() -> None:
    scripts = CORPUS[:2] + BROKEN[:1]
    result = subprocess.run([sys.executable, "-m", "usernet.cli", "drill", *scripts], capture_output=True, text=True,
                            timeout=120)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1
    assert [line.split()[0] for line in lines[:-1]] == ["PASS"] * (len(scripts) - 1) + ["FAIL"]
    assert lines[-2].startswith(f"FAIL {BROKEN[0]}:")
    assert lines[-1] == f"{len(scripts) - 1} passed, 1 failed"


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 60 and len(BROKEN) >= 5


def test_every_broken_script_names_its_line() -> None:
    for path in BROKEN:
        with open(path) as f:
            assert f.readline().startswith("// FAIL AT LINE"), path


RELAXED = sorted(glob.glob(os.path.join(HERE, "relaxed", "*.pkt")))


@pytest.mark.parametrize("path", RELAXED, ids=[os.path.basename(p) for p in RELAXED])
def test_linux_style_script_passes_only_relaxed(path: str) -> None:
    strict = run(path)
    assert not strict.passed
    relaxed = run(path, relaxed=True, strict_asserts=True)
    assert relaxed.passed, f"{relaxed.line}: {relaxed.message}"
    with open(path) as f:
        if "`" in f.read():
            assert any("shell command skipped" in note for note in relaxed.notes)
