"""Our own RFC 9293 corpus (tests/conformance/rfc9293/): the segment-arrival rules of 3.10.7
state by state, RFC 5961's window checks, out-of-order permutations, overlaps and D-SACK.

Every script passes, except those in EXPECTED_FAILURES: they fail because of a known engine or
runner behaviour still being implemented (or a stack bug found and not yet fixed) and are marked
xfail(strict=True), so each flips to a failure the day it starts passing and must leave the list.
A %{ }% block the runner skipped (an unknown name, no connection) or a packet sent after the last
event (which packetdrill, and so the runner, never looks at) counts as a failure here: what was
never checked must not pass. Scripts that check for silence end with a timed event for that.
"""

from __future__ import annotations

import glob
import os

import pytest

from usernet.drill import parse_script, run_script

HERE = os.path.join(os.path.dirname(__file__), "rfc9293")
SCRIPTS = sorted(glob.glob(os.path.join(HERE, "**", "*.pkt"), recursive=True))

EXPECTED_FAILURES: dict[str, str] = {}


def _rel(path: str) -> str:
    return os.path.relpath(path, HERE).replace(os.sep, "/")


def _params() -> list[object]:
    params: list[object] = []
    for path in SCRIPTS:
        rel = _rel(path)
        marks = []
        if rel in EXPECTED_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=EXPECTED_FAILURES[rel]))
        params.append(pytest.param(path, id=rel, marks=marks))
    return params


@pytest.mark.parametrize("path", _params())
def test_rfc9293_script_passes(path: str) -> None:
    with open(path) as f:
        text = f.read()
    result = run_script(parse_script(text, path))
    assert result.passed, f"{_rel(path)}:{result.line}: {result.message}"
    # Stricter than packetdrill: a skipped %{ }% block was never checked, and a packet sent after the
    # last event was never compared with anything; either would let a wrong stack pass.
    unchecked = [note for note in result.notes if "python block skipped" in note or "not checked" in note]
    assert not unchecked, f"{_rel(path)}: {unchecked}"


def test_every_script_names_its_rule() -> None:
    for path in SCRIPTS:
        with open(path) as f:
            first = f.readline()
        assert first.startswith("// RFC "), f"{_rel(path)}: the first line must name the RFC rule it checks"


def test_expected_failures_name_existing_scripts() -> None:
    known = {_rel(p) for p in SCRIPTS}
    assert set(EXPECTED_FAILURES) <= known, set(EXPECTED_FAILURES) - known


def test_corpus_is_large_enough() -> None:
    assert len(SCRIPTS) >= 85  # with the 65 of tests/conformance: at least 150 of our own
