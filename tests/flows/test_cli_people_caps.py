"""`ghosts people --max-per-person N --max-per-owner N`: the caps the review counter warns above, set in the
workspace (0 clears one), in the text and JSON output."""

from __future__ import annotations

import json

from click.testing import CliRunner

from curation.catalog.people import get_caps
from flows.cli import main


def test_people_sets_and_clears_the_caps(workspace):
    runner = CliRunner()
    data = ["--data", str(workspace.root)]
    out = runner.invoke(main, ["people", "--max-per-person", "3", "--max-per-owner", "10", "--json", *data])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["caps"] == {"max_per_person": 3, "max_per_owner": 10}
    with workspace.session() as s:
        assert get_caps(s) == {"max_per_person": 3, "max_per_owner": 10}
    cleared = runner.invoke(main, ["people", "--max-per-person", "0", *data])
    assert cleared.exit_code == 0, cleared.output
    assert cleared.output.splitlines()[-1] == "caps: max per person none, max per owner 10"
    with workspace.session() as s:
        assert get_caps(s) == {"max_per_person": None, "max_per_owner": 10}
    bad = runner.invoke(main, ["people", "--max-per-owner", "-1", *data])
    assert bad.exit_code == 2 and "--max-per-owner" in bad.output
