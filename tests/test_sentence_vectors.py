"""Sentence vectors pooled from each passage's own encoder pass: the bold sentence without encoding at question
time, the same sentence as encoding each one alone, and passages stored without them still highlighted."""

from __future__ import annotations

import json

import numpy as np
from sqlmodel import select

from bot.storage import Passage
from index.chunker import split_sentences
from index.sentence_vectors import from_bytes, pool_sentences

def test_each_sentence_is_the_normalised_mean_of_its_own_tokens():
    states = np.array([[9, 9], [1, 0], [3, 0], [0, 2], [9, 9]], dtype=np.float32)  # [CLS] a b | c [SEP]
    offsets = [(0, 0), (0, 1), (2, 3), (5, 6), (0, 0)]
    rows = pool_sentences(states, offsets, [(0, 4), (5, 7)])
    assert np.allclose(rows, [[1, 0], [0, 1]])
    assert pool_sentences(states, offsets, [(0, 4), (5, 7), (8, 20)]) is None, "a sentence cut off by truncation"


def test_ingestion_stores_one_vector_per_sentence_of_passages_with_several(seeded_app):
    with seeded_app.corpus.store.session() as session:
        passages = list(session.exec(select(Passage)))
    several = [p for p in passages if len(split_sentences(p.text)) > 1]
    assert len(several) > 20
    for passage in several:
        vectors = from_bytes(passage.sentence_vectors, 384)
        assert vectors is not None and len(vectors) == len(split_sentences(passage.text)), passage.text
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-2)
    assert all(p.sentence_vectors == b"" for p in passages if len(split_sentences(p.text)) < 2), "none needed"


class CountingEncoder:
    def __init__(self, inner):
        self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, 0

    def encode(self, texts):
        self.texts += len(texts)
        return self.inner.encode(texts)


def questions_about_the_seeded_corpus(shared_data) -> list[dict]:
    lines = (shared_data / "dev-qa.jsonl").read_text(encoding="utf-8").splitlines()
    return [item for item in map(json.loads, filter(None, lines))
            if str(item.get("article_id")).startswith(("seed", "GUM_news")) and item.get("answer")]


def bold_holding_the_answer(app, items: list[dict]) -> tuple[int, int, list[str]]:
    """Of the shown passages of several sentences that contain the answer: how many have it in the bold sentence."""
    hits = total = 0
    shown = []
    for item in items:
        answer = item["answer"].lower()
        for result in app.service.ask(item["question"]).results:
            start = result.text.lower().find(answer[:40])
            if start < 0 or len(split_sentences(result.text)) < 2:
                continue
            total += 1
            hits += result.highlight_start < start + len(answer) and start < result.highlight_end
            shown.append(result.highlight)
    return hits, total, shown


def test_questions_encode_no_sentence_and_bold_the_answer_as_often_as_encoding_each_sentence(seeded_app, shared_data):
    items = questions_about_the_seeded_corpus(shared_data)
    counting = CountingEncoder(seeded_app.corpus.encoder)
    seeded_app.corpus._highlight_encoder = counting
    stored_hits, total, stored = bold_holding_the_answer(seeded_app, items)
    assert counting.texts == 0, "every shown passage had its sentence vectors"
    with seeded_app.corpus.store.engine.begin() as connection:  # as if stored before sentence vectors existed
        connection.execute(Passage.__table__.update().values(sentence_vectors=None))
    live_hits, live_total, live = bold_holding_the_answer(seeded_app, items)
    assert counting.texts > 0, "without them the sentences are encoded, as before"
    assert total == live_total >= 4 and len(stored) == len(live)
    assert stored_hits >= live_hits and stored_hits >= total / 2, (stored_hits, live_hits, total)

    # `briefbot reindex --sentences` gives the older passages theirs, and questions stop encoding again.
    assert seeded_app.corpus.add_sentence_vectors() > 20
    assert seeded_app.corpus.add_sentence_vectors() == 0, "nothing left to do"
    encoded = counting.texts
    assert bold_holding_the_answer(seeded_app, items)[2] == stored and counting.texts == encoded
