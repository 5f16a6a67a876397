import hashlib

from curation.sources.ingest import ingest_paths
from curation.sources.synthetic import make_demo_posts


def _digest(folder):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def test_demo_posts_are_deterministic_and_exercise_ingest(tmp_path, workspace):
    a = make_demo_posts(tmp_path / "a", n=14, seed=3)
    b = make_demo_posts(tmp_path / "b", n=14, seed=3)
    assert _digest(a.folder) == _digest(b.folder)
    assert (a.with_face, a.without_face, a.broken) == (8, 2, 4)
    summary = ingest_paths(workspace, [a.folder], progress=False)
    assert summary.added == 10
    assert len(summary.rejected) == 4  # truncated, not an image, empty, decompression bomb
    assert summary.skipped == 1  # posts.json
