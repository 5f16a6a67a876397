"""The option shapes flows/cli_options.py gives the command modules."""

from __future__ import annotations

import click
from click.testing import CliRunner

from alignment.identity import SAME_PERSON
from flows import cli_options
from flows.cli_options import choice_option, file_option, folder_option, json_option, same_person_option


def test_the_cli_threshold_default_is_the_libraries_same_person_distance():
    # Written out in cli_options so that --help does not load dlib; it must not drift from the library's.
    assert cli_options.SAME_PERSON == SAME_PERSON


@click.command()
@choice_option("--mode", choices=("first", "second"), help="A choice.")
@file_option("--out", help="One file.")
@folder_option("--outdir", required=False, help="A folder.")
@same_person_option("A distance.")
@json_option()
def _probe(mode, out, outdir, threshold, as_json):
    click.echo(f"{mode} {type(out).__name__} {outdir} {threshold} {as_json}")


def test_the_shared_options_parse_as_they_say(tmp_path):
    r = CliRunner().invoke(_probe, ["--out", str(tmp_path / "a.png")])
    assert r.exit_code == 0 and r.output.split() == [
        "first",
        type(tmp_path).__name__,
        "None",
        "0.6",
        "False",
    ]
    r = CliRunner().invoke(_probe, ["--out", str(tmp_path / "a.png"), "--mode", "third"])
    assert r.exit_code == 2 and "'third' is not one of 'first', 'second'" in r.output
    r = CliRunner().invoke(_probe, ["--out", str(tmp_path)])  # a folder where a file is asked for
    assert r.exit_code == 2 and "is a directory" in r.output
    r = CliRunner().invoke(_probe, [])
    assert r.exit_code == 2 and "Missing option '--out'" in r.output
    r = CliRunner().invoke(_probe, ["--out", "x", "--threshold", "0"])
    assert r.exit_code == 2 and "--threshold" in r.output
    shown = " ".join(CliRunner().invoke(_probe, ["--help"]).output.split())
    assert "[default: first]" in shown and "[default: 0.6; 0<x<=2]" in shown


def test_data_naming_a_file_says_what_to_type_on_every_command(tmp_path, monkeypatch):
    # NVlabs' train.py takes the archive as --data; in ghosts --data is the workspace on every command.
    from flows.cli import main

    monkeypatch.delenv("GHOSTS_DATA", raising=False)
    archive = tmp_path / "x.zip"
    archive.write_bytes(b"PK")
    r = CliRunner().invoke(main, ["run", "train", "--data", str(archive)])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and f"To train this archive type `--archive {archive}`" in said, r.output
    assert "or `--data WORKSPACE`" in said and "is a file." not in said  # not click's generic message
    r = CliRunner().invoke(main, ["status", "--data", str(archive)])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "is a file, not one: type `--data WORKSPACE`" in said, r.output
    assert "--archive" not in said  # status has no --archive to suggest
    r = CliRunner().invoke(main, ["status", "--data", str(tmp_path / "nowhere")])
    assert r.exit_code != 0 and "is a file" not in r.output  # a folder that is not there: the usual error
