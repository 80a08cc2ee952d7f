"""Helpers for tests of bad input: copies of a published set to edit, and the CLI's answer."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from click.testing import CliRunner

from reaxopt.cli import main


def run(*args):
    """``reaxopt ARGS`` in this process (click's runner: stdout and stderr kept apart)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def cobalt_copy(shared_datasets: Path, folder: Path) -> Path:
    """A config over copies of the cobalt inputs in ``folder`` (edit them freely)."""
    for name in ("ffield_lit", "geo", "trainset.in", "params"):
        shutil.copy(shared_datasets / "cobalt" / name, folder / name)
    config = folder / "config.yaml"
    config.write_text("force_field: ffield_lit\nparams: params\ngeo: geo\n"
                      "trainset: trainset.in\n")
    return config


def edit_line(path: Path, number: int, new: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = new
    path.write_text("\n".join(lines) + "\n")


def line_of(path: Path, pattern: str) -> int:
    """1-based number of the first line matching ``pattern``."""
    return next(k for k, line in enumerate(path.read_text().splitlines(), start=1)
                if re.search(pattern, line))


def assert_input_error(result, *needles: str) -> str:
    """Exit 2, no traceback, nothing on stdout, one paragraph 'error: ...' holding needles."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    message = result.stderr
    assert message.startswith("error: ") and message.count("\n") == 1, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def assert_problems(result, count: int, *needles: str) -> list[str]:
    """Exit 2, no traceback: 'error: N problems in the inputs:' then one line per problem;
    returns the problem lines."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.rstrip("\n").splitlines()
    assert lines[0] == f"error: {count} problems in the inputs:", result.stderr
    problems = lines[1:]
    assert len(problems) == count and all(p.startswith("  - ") for p in problems), problems
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    return problems
