"""Ingestion into the database and the index: idempotent, replaceable, and recoverable after a crash."""

import json
from pathlib import Path

import pytest

from bot.corpus import Corpus


def write_jsonl(path: Path, articles: list[dict]) -> Path:
    path.write_text("".join(json.dumps(a) + "\n" for a in articles), encoding="utf-8")
    return path


def article(article_id: str, text: str, title: str = "A headline") -> dict:
    return {"id": article_id, "title": title, "text": text, "source": "Test Wire", "author": None,
            "published": "2026-11-20T08:00:00Z", "url": f"https://example.org/{article_id}", "dateline": None}


def consistent(app) -> bool:
    return app.corpus.index.ids() == app.corpus.store.passage_ids()


def test_seed_ingest_stores_clean_attributed_passages(make_app, shared_data):
    app = make_app()
    report = app.corpus.ingest_paths([shared_data / "seed"])
    assert (report.added, report.failures) == (1, [])
    (stored,) = app.corpus.store.latest_articles(1)
    assert stored.title == "Iran-Pakistan flare-up rooted in borderlands"
    assert stored.source == "Agencies Via Xinhua"
    passages = app.corpus.store.article_passages(stored.id)
    texts = " ".join(p.text for p in passages)
    assert "Today's Top News" not in texts and "Zelensky" not in texts
    brew = [p for p in passages if "Gregory Brew" in p.text]
    assert brew and brew[0].speakers[0].name == "Gregory Brew"
    assert all(stored.text[p.start:p.end] == p.text for p in passages), "spans point into the cleaned article"
    assert [p.position for p in passages] == list(range(len(passages)))
    assert consistent(app)


def test_same_article_twice_changes_nothing(make_app, tmp_path):
    source = write_jsonl(tmp_path / "a.jsonl", [article("a1", "The council met on Monday. It approved the budget.")])
    app = make_app()
    first = app.corpus.ingest_paths([source])
    before = app.corpus.store.passage_ids()
    second = app.corpus.ingest_paths([source])
    assert (first.added, second.added, second.unchanged) == (1, 0, 1)
    assert app.corpus.store.passage_ids() == before


def test_changed_article_replaces_its_passages(make_app, tmp_path):
    app = make_app()
    app.corpus.ingest_paths([write_jsonl(tmp_path / "v1.jsonl", [article("a1", "The mayor resigned on Monday.")])])
    report = app.corpus.ingest_paths([write_jsonl(tmp_path / "v2.jsonl", [article("a1", "The mayor stayed in office.")])])
    assert report.updated == 1
    assert app.corpus.store.counts() == (1, 1)
    texts = [p.text for p in app.corpus.store.passages_by_id(app.corpus.store.passage_ids()).values()]
    assert texts == ["The mayor stayed in office."]
    assert consistent(app)


def test_crash_between_database_write_and_index_save_is_repaired_on_start(make_app, tmp_path, monkeypatch):
    app = make_app()
    app.corpus.ingest_paths([write_jsonl(tmp_path / "one.jsonl", [article("a1", "Ships waited outside the port.")])])
    saved_ids = app.corpus.index.ids()

    def crash():
        raise SystemExit("killed before the index was saved")

    monkeypatch.setattr(app.corpus, "save_index", crash)
    with pytest.raises(SystemExit):
        app.corpus.ingest_paths([write_jsonl(tmp_path / "two.jsonl", [article("a2", "Dock workers began a strike.")])])
    monkeypatch.undo()

    from index.vectors import VectorIndex
    assert VectorIndex.load(app.corpus.index_path, 384).ids() == saved_ids, "the crash left the old index on disk"
    restarted = make_app()
    assert restarted.corpus.store.counts() == (2, 2)
    assert consistent(restarted)
    answer = restarted.service.ask("did dock workers strike?", k=1)
    assert answer.results[0].text == "Dock workers began a strike."


def test_corrupt_or_missing_index_is_rebuilt_from_the_database(make_app, tmp_path):
    app = make_app()
    app.corpus.ingest_paths([write_jsonl(tmp_path / "a.jsonl", [article("a1", "Rain fell. Rivers rose."),
                                                                 article("a2", "Markets fell sharply.")])])
    expected = app.corpus.store.passage_ids()
    app.corpus.index_path.write_bytes(b"\x00garbage")
    assert make_app().corpus.index.ids() == expected
    app.corpus.index_path.unlink()
    assert make_app().corpus.index.ids() == expected


def test_bad_files_are_reported_and_the_rest_goes_in(make_app, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (folder / "latin1.txt").write_bytes("Caf\xe9 owners protest\n\nThey said prices rose.".encode("latin-1"))
    write_jsonl(folder / "good.jsonl", [article("g1", "The bridge reopened on Friday.")])
    (folder / "mixed.jsonl").write_text('{"id": "x", "title": "no text"}\nnot json\n' + json.dumps(article("g2", "Trains ran late.")) + "\n")
    app = make_app()
    report = app.corpus.ingest_paths([folder])
    assert report.added == 2
    reasons = " ".join(f.origin for f in report.failures)
    assert "binary.txt" in reasons and "latin1.txt" in reasons and "mixed.jsonl:1" in reasons and "mixed.jsonl:2" in reasons
    assert consistent(app)


def test_database_url_overrides_the_data_dir(settings, encoder, tmp_path):
    settings.database_url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    corpus = Corpus(settings, encoder)
    assert corpus.store.url.endswith("elsewhere.db")
    assert (tmp_path / "elsewhere.db").exists()
