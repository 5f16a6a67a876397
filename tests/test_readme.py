"""The README's commands must work as written: every `ghosts ...` example names a real command and real options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from flows.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _examples() -> list[str]:
    text = README.read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.DOTALL)
    lines = []
    for block in blocks:
        # Join continuation lines, drop comments and prompts.
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith(("ghosts ", ".venv/bin/ghosts ")):
                lines.append(line.split(" #", 1)[0].removeprefix(".venv/bin/"))
    return lines


def _resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    cmd: click.Command = main
    rest = argv
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), rest[0])
        assert sub is not None, f"README uses unknown command {' '.join(argv)!r}"
        cmd, rest = sub, rest[1:]
    return cmd, rest


def test_readme_has_examples():
    assert len(_examples()) >= 10


@pytest.mark.parametrize("line", _examples())
def test_readme_example_matches_cli(line):
    argv = shlex.split(line)[1:]
    cmd, rest = _resolve(argv)
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    known |= {"--help", "-h"}
    for tok in rest:
        if tok.startswith("--"):
            name = tok.split("=", 1)[0]
            assert name in known, f"README example {line!r}: `ghosts {cmd.name}` has no option {name}"
