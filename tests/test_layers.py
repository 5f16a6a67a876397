"""The rooms' import order (.importlinter, drawn in docs/architecture.md) holds: import-linter checks it."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe), "--no-cache", *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def test_every_room_imports_only_the_rooms_below_it():
    done = lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_contract_names_every_room():
    config = (REPO / ".importlinter").read_text()
    rooms = [
        "flows",
        "training",
        "curation.datasets",
        "curation.review",
        "curation.analysis",
        "alignment",
        "curation.sources",
        "curation.catalog",
    ]
    listed = [p.name for p in (REPO / "curation").iterdir() if (p / "__init__.py").is_file()]
    assert sorted(f"curation.{n}" for n in listed) == sorted(r for r in rooms if r.startswith("curation."))
    assert all(r in config for r in rooms)
