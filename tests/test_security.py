"""Security findings of the reliability review, each with its test (docs/reliability.md)."""

from __future__ import annotations

import stat


def test_a_new_data_directory_is_private(tmp_path, monkeypatch, encoder):
    """The database in it holds every chat's questions and chat ids: nobody else on the machine may read it."""
    from bot.app import Briefbot
    from bot.settings import Settings

    monkeypatch.delenv("DATABASE_URL", raising=False)
    data_dir = tmp_path / "fresh" / "data"
    app = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=data_dir, DATABASE_URL=None), encoder=encoder, sync_index=False)
    app.corpus.store.engine.dispose()
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 == 0, oct(data_dir.stat().st_mode)
