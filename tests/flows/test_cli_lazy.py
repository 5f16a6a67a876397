"""flows/cli.py imports a room's command module only when one of its commands is used: the table of names it
keeps must match what the modules define, and a command must start without the other rooms' heavy imports."""

from __future__ import annotations

import importlib
import subprocess
import sys

from flows.cli import ROOM_COMMANDS, main


def test_the_table_names_exactly_the_commands_each_room_defines():
    for room, names in ROOM_COMMANDS.items():
        module = importlib.import_module(f"flows.{room}")
        assert tuple(c.name for c in module.COMMANDS) == names, room
    listed = set(main.commands)
    assert {"init", "import", "status"} | {n for names in ROOM_COMMANDS.values() for n in names} == listed
    assert main.commands["pack"].name == "pack" and main.commands.get("no-such-command") is None


def _modules_loaded_by(argv: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from flows.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.strip().splitlines()[-1].split())


def test_pack_and_align_start_without_the_other_rooms():
    for argv in (["pack", "--help"], ["align", "--help"]):
        loaded = _modules_loaded_by(argv)
        for heavy in (
            "instaloader",
            "prefect",
            "torch",
            "flows.cli_sources",
            "flows.cli_flows",
            "flows.cli_train",
        ):
            assert heavy not in loaded, (argv, heavy)
    assert "flows.cli_sources" in _modules_loaded_by(["--help"])
