"""One formatting style over the whole tree: ruff's formatter, configured in pyproject.toml ([tool.ruff.format])."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_tree_is_formatted_by_ruff():
    ruff = Path(sys.executable).with_name("ruff")
    done = subprocess.run(
        [str(ruff), "format", "--check", "--diff", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (
        "run `ruff format .` (or `make format`):\n" + done.stdout[-4000:] + done.stderr
    )
