"""`ghosts demo` end to end, small: synthetic posts -> the pipeline flow -> a trained checkpoint and pictures."""

import numpy as np
from click.testing import CliRunner
from PIL import Image

from flows.cli import main


def test_demo_runs_the_whole_chain(prefect_api, tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(
        main, ["demo", "--out", str(out), "--posts", "16", "--kimg", "0.04"], catch_exceptions=False
    )
    assert r.exit_code == 0, r.output
    lines = {l.split()[0]: l.split()[-1] for l in r.output.splitlines() if l.strip() and len(l.split()) >= 2}
    archive, grid, morph = lines["archive"], lines["fakes"], lines["morph"]
    assert archive.endswith("demo-v1-64.zip")
    fakes = np.asarray(Image.open(grid).convert("RGB"))
    assert fakes.shape[0] >= 64 and fakes.std() > 5  # a real picture, not a blank
    gif = Image.open(morph)
    assert gif.n_frames > 2
    assert "rejected" in r.output  # the broken posts were refused, not fatal
