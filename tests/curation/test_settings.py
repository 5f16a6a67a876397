"""Workspace settings from GHOSTS_* environment variables: typed, bounded, and one clear error when wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from curation.catalog.errors import GhostsError
from curation.catalog.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_defaults_without_any_variable():
    s = Settings()
    assert s.data == Path("data") and s.db_url is None and s.inception is None and s.review_token is None
    assert (s.max_pixels, s.max_file_bytes, s.near_dup_distance, s.lock_timeout) == (
        100_000_000,
        2_000_000_000,
        6,
        30.0,
    )


def test_variables_are_read_by_type_in_any_case_and_arguments_win(monkeypatch, tmp_path):
    monkeypatch.setenv("GHOSTS_DATA", str(tmp_path))
    monkeypatch.setenv("GHOSTS_MAX_PIXELS", " 2000 ")
    monkeypatch.setenv("ghosts_lock_timeout", "2.5")  # pydantic-settings matched names in any case too
    monkeypatch.setenv("GHOSTS_INCEPTION", str(tmp_path / "inception.pt"))
    monkeypatch.setenv("GHOSTS_DB_URL", "")  # empty: unset
    s = Settings()
    assert s.data == tmp_path and isinstance(s.data, Path)
    assert s.max_pixels == 2000 and isinstance(s.max_pixels, int)
    assert s.lock_timeout == 2.5
    assert s.inception == tmp_path / "inception.pt"
    assert s.db_url is None
    assert Settings(data=Path("elsewhere"), lock_timeout=1.0).data == Path("elsewhere")
    assert Settings(data=Path("elsewhere")).max_pixels == 2000  # the others still from the environment


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("GHOSTS_LOCK_TIMEOUT", "abc", "GHOSTS_LOCK_TIMEOUT='abc': expected a number"),
        ("GHOSTS_LOCK_TIMEOUT", "nan", "GHOSTS_LOCK_TIMEOUT='nan': expected a finite number"),
        ("GHOSTS_LOCK_TIMEOUT", "0", "GHOSTS_LOCK_TIMEOUT='0': must be more than 0"),
        ("GHOSTS_MAX_PIXELS", "1e8", "GHOSTS_MAX_PIXELS='1e8': expected a whole number"),
        ("GHOSTS_MAX_PIXELS", "-5", "GHOSTS_MAX_PIXELS='-5': must be more than 0"),
        ("GHOSTS_NEAR_DUP_DISTANCE", "33", "GHOSTS_NEAR_DUP_DISTANCE='33': must be from 0 to 32"),
        ("GHOSTS_MAX_FILE_BYTES", "", "GHOSTS_MAX_FILE_BYTES='': expected a whole number"),
    ],
)
def test_a_bad_value_is_one_error_naming_the_variable(monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    with pytest.raises(GhostsError, match=f"^environment variable {message}$".replace("(", r"\(")):
        Settings()


def test_the_command_line_reports_a_bad_variable_in_one_line(tmp_path):
    env = {**os.environ, "GHOSTS_LOCK_TIMEOUT": "soon", "PYTHONPATH": str(REPO)}
    ghosts = Path(sys.executable).with_name("ghosts")
    r = subprocess.run(
        [str(ghosts), "status", "--data", str(tmp_path)], capture_output=True, text=True, env=env, check=False
    )
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        == "ghosts: error: environment variable GHOSTS_LOCK_TIMEOUT='soon': expected a number"
    )


def test_reading_settings_does_not_load_pydantic():
    code = "import sys\nfrom curation.catalog.settings import Settings\nSettings()\nprint('pydantic' in sys.modules)\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
