"""Sentence splitting and passage building on made-up cleaned text."""

from __future__ import annotations

import time

import pytest

from index.chunker import chunk_article, split_sentences


def sentences(text: str) -> list[str]:
    spans = split_sentences(text)
    for start, end in spans:
        assert text[start:end] == text[start:end].strip() and text[start:end]
    return [text[start:end] for start, end in spans]


@pytest.mark.parametrize(
    "text",
    [
        "The U.S. Treasury said Mr. Smith met Dr. Jones on Jan. 3 in Washington, D.C. for talks.",
        "Acme Corp. and Widget Inc. agreed to merge at 5.93 dlrs a share, J. Smith of St. Louis said.",
        "Shares rose on Feb. 26 vs. a year ago, No. 2 producer Bank of Tokyo Ltd. said.",
        "He voted for Barcelona vs. Madrid and bought U.S. 30-year bonds at 9.5 pct.",
        "Exports to the U.S. And Japan rose, the ministry said.",
        '"Why not?" Smith asked.',
        '"We will not back down," he said.',
        "Prices were mixed, e.g. coffee rose and tea fell.",
    ],
)
def test_abbreviations_initials_decimals_and_quotes_do_not_end_a_sentence(text):
    assert sentences(text) == [text]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("It rained. Then it stopped.", ["It rained.", "Then it stopped."]),
        ("Is it over? Nobody knows! We wait.", ["Is it over?", "Nobody knows!", "We wait."]),
        (
            '"It is over." The talks ended. (Both sides agreed.) Markets rose.',
            ['"It is over."', "The talks ended.", "(Both sides agreed.)", "Markets rose."],
        ),
        (
            '"Iran considers the security of its people a red line," the ministry said. It added more.',
            ['"Iran considers the security of its people a red line," the ministry said.', "It added more."],
        ),
        ("The team flew to the U.S. The President met them.", ["The team flew to the U.S.", "The President met them."]),
        ("Sales were made by Acme Corp. The company said so.", ["Sales were made by Acme Corp.", "The company said so."]),
        ("The six - member team won . The coach cried .", ["The six - member team won .", "The coach cried ."]),
        ("First paragraph without a stop\n\nSecond one.", ["First paragraph without a stop", "Second one."]),
    ],
)
def test_sentence_ends(text, expected):
    assert sentences(text) == expected


def test_split_sentences_of_empty_text():
    assert split_sentences("") == []
    assert split_sentences("  \n\n ") == []


def make_paragraph(n_sentences: int, words_each: int, tag: str) -> str:
    return " ".join(f"{tag}{i} " + " ".join(["word"] * (words_each - 2)) + " end." for i in range(n_sentences))


def check_spans(text, chunks):
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.speakers == ()
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))


def test_passages_respect_word_and_sentence_limits_and_keep_every_sentence():
    text = make_paragraph(10, 12, "A") + "\n\n" + make_paragraph(7, 30, "B")
    chunks = chunk_article(text, max_words=80, max_sentences=3)
    check_spans(text, chunks)
    for chunk in chunks:
        spans = split_sentences(chunk.text)
        assert 1 <= len(spans) <= 3
        assert len(chunk.text.split()) <= 80
    # every sentence lands whole in exactly one passage, in order
    all_sentences = sentences(text)
    joined = [s for chunk in chunks for s in sentences(chunk.text)]
    assert joined == all_sentences
    # passages are filled up to the limits, not one sentence each
    assert max(len(split_sentences(c.text)) for c in chunks) == 3
    assert any(len(split_sentences(c.text)) == 2 for c in chunks if c.text.startswith("B"))


def test_a_sentence_longer_than_the_limit_is_its_own_passage():
    long_sentence = "Long " + " ".join(["word"] * 120) + " end."
    text = f"Short one. {long_sentence} Another short one."
    chunks = chunk_article(text, max_words=80)
    check_spans(text, chunks)
    assert [c.text for c in chunks] == ["Short one.", long_sentence, "Another short one."]


def test_passages_never_cross_paragraphs_and_short_paragraphs_stay_apart():
    text = "One.\n\nTwo.\n\nThree is here. Four too."
    chunks = chunk_article(text)
    check_spans(text, chunks)
    assert [c.text for c in chunks] == ["One.", "Two.", "Three is here. Four too."]
    assert all("\n" not in c.text for c in chunks)


def test_a_megabyte_without_punctuation_is_cut_into_bounded_pieces():
    words = [f"w{i % 1000}" for i in range(220_000)]
    text = "Intro sentence.\n\n" + " ".join(words)
    assert len(text) > 1_000_000
    started = time.perf_counter()
    chunks = chunk_article(text)
    assert time.perf_counter() - started < 10
    check_spans(text, chunks)
    assert chunks[0].text == "Intro sentence."
    pieces = chunks[1:]
    assert all(len(p.text.split()) <= 200 for p in pieces)
    assert [w for p in pieces for w in p.text.split()] == words  # nothing lost, no word cut in two


def test_a_giant_token_is_bounded_too():
    text = "x" * 50_000
    chunks = chunk_article(text)
    check_spans(text, chunks)
    assert len(chunks) > 1 and all(len(c.text) <= 5_000 for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_empty_text_has_no_passages():
    assert chunk_article("") == []
    assert chunk_article("\n\n  \n") == []
