"""Workspace settings: one upsert statement (parallel analysis batches inserting one new key collided on
workspace_settings.key, then retried), read back right in the session that wrote it."""

from curation.catalog.schema import get_setting, set_setting
from curation.catalog.workspace import init_workspace


def test_a_setting_read_in_the_session_follows_the_write(tmp_path):
    ws = init_workspace(tmp_path)
    with ws.session() as s:
        set_setting(s, "k", 1)
        assert get_setting(s, "k") == 1
        set_setting(s, "k", {"a": 2})
        assert get_setting(s, "k") == {"a": 2}
    with ws.session() as s:
        assert get_setting(s, "k") == {"a": 2}
