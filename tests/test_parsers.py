"""Parsing and cleaning: real corpora from ../shared/data, plus small made-up files for layout and bad input."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest

from index.chunker import chunk_article
from index.cleaning import clean_text, clean_title
from index.parsers import ParseFailure, iter_inputs, parse_path
from index.types import ParsedArticle

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = DATA / "seed" / "iran-pakistan-flare-up.txt"
REUTERS = DATA / "reuters-dev" / "articles.jsonl"
GUM = DATA / "gum-news" / "articles.jsonl"

needs = lambda path: pytest.mark.skipif(not path.exists(), reason=f"{path} not available")  # noqa: E731
SIGNOFF_AT_END = re.compile(r"(?:^|[.!?\")\d]\s+)(?:reuters?|more)\W*$", re.IGNORECASE)


def parse_all(path: Path) -> tuple[list[ParsedArticle], list[ParseFailure]]:
    articles, failures = [], []
    for item in parse_path(path):
        (failures if isinstance(item, ParseFailure) else articles).append(item)
    return articles, failures


def only_article(path: Path) -> ParsedArticle:
    articles, failures = parse_all(path)
    assert not failures and len(articles) == 1
    return articles[0]


# --- the seed article --------------------------------------------------------------------------------------------
@needs(SEED)
def test_seed_headline_dateline_and_credit():
    article = only_article(SEED)
    assert article.title == "Iran-Pakistan flare-up rooted in borderlands"
    assert article.dateline == "DUBAI/ISLAMABAD"
    assert article.source == "Agencies Via Xinhua"
    assert article.text.startswith("An Iranian strike on Pakistan")
    assert "Agencies Via Xinhua" not in article.text
    assert article.origin == str(SEED)


@needs(SEED)
def test_seed_page_furniture_never_reaches_passages():
    article = only_article(SEED)
    bullets = [line[2:] for line in SEED.read_text(encoding="utf-8").splitlines() if line.startswith("- ")]
    assert bullets, "the seed should still have its furniture list"
    chunks = chunk_article(article.text)
    assert chunks
    for chunk in chunks:
        assert "Today's Top News" not in chunk.text
        for word in ("Putin", "Zelensky", "Chengdu"):
            assert word not in chunk.text
        for bullet in bullets:
            assert bullet not in chunk.text
    assert chunks[-1].text.endswith("China also offered to mediate between the two neighbors.")


@needs(SEED)
def test_seed_gregory_brew_sentence_is_one_intact_passage():
    sentence = next(line for line in SEED.read_text(encoding="utf-8").splitlines() if line.startswith("Gregory Brew"))
    chunks = chunk_article(only_article(SEED).text)
    assert sum(sentence in chunk.text for chunk in chunks) == 1


# --- Reuters-21578 -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reuters():
    """All of reuters-dev parsed, cleaned and chunked once, with the time it took."""
    if not REUTERS.exists():
        pytest.skip(f"{REUTERS} not available")
    started = time.perf_counter()
    articles, failures = parse_all(REUTERS)
    all_chunks = [(article, chunk_article(article.text)) for article in articles]
    return articles, failures, all_chunks, time.perf_counter() - started


def test_all_reuters_stories_parse_clean_and_chunk_quickly(reuters):
    articles, failures, all_chunks, elapsed = reuters
    expected = sum(1 for line in REUTERS.open(encoding="utf-8") if line.strip())
    assert failures == []
    assert len(articles) == expected
    assert elapsed < 60, f"parse+clean+chunk took {elapsed:.1f}s"

    for article, chunks in all_chunks:
        assert chunks, article.origin
        assert [c.position for c in chunks] == list(range(len(chunks)))
        assert "\n" not in article.title and not re.search(r"<[A-Z]", article.title)
        previous_end = 0
        for chunk in chunks:
            where = f"{article.external_id}#{chunk.position}: {chunk.text[:80]!r}"
            assert article.text[chunk.start : chunk.end] == chunk.text, where
            assert chunk.start >= previous_end, where
            previous_end = chunk.end
            assert "\n" not in chunk.text, where
            assert not re.search(r"<[A-Z]", chunk.text), where
            assert not SIGNOFF_AT_END.search(chunk.text), where
            assert chunk.text == chunk.text.strip(), where
            # cut between words only
            assert chunk.start == 0 or article.text[chunk.start - 1].isspace(), where
            assert chunk.end == len(article.text) or article.text[chunk.end].isspace(), where
            assert chunk.speakers == ()


def test_reuters_story_fields_and_cleaning(reuters):
    articles = {a.external_id: a for a in reuters[0]}
    cocoa, standard = articles["reuters-1"], articles["reuters-2"]
    assert cocoa.title == "BAHIA COCOA REVIEW"
    assert cocoa.dateline == "SALVADOR, Feb 26"
    assert cocoa.source == "Reuters"
    assert cocoa.published is not None and cocoa.published.utcoffset() == timedelta(0)
    assert cocoa.published.isoformat() == "1987-02-26T15:01:01+00:00"
    # hard wrapping is gone, the indented lines became paragraphs, the sign-off is gone
    assert "cumulative total for the season of 5.93 mln against 5.81" in cocoa.text
    assert "\n\nThe dry period means the temporao will be late this year.\n\n" in cocoa.text
    assert cocoa.text.endswith("after carnival which ends midday on February 27.")
    assert standard.title == "STANDARD OIL (SRD) TO FORM FINANCIAL UNIT"
    assert "British Petroleum Co Plc (BP), which also owns" in standard.text


# --- GUM / Wikinews ----------------------------------------------------------------------------------------------
@needs(GUM)
def test_gum_news_parses_with_aware_dates_and_untouched_prose():
    import json

    raw = [json.loads(line) for line in GUM.open(encoding="utf-8") if line.strip()]
    articles, failures = parse_all(GUM)
    assert failures == []
    assert len(articles) == len(raw) == 24
    for article, record in zip(articles, raw):
        assert article.external_id == record["id"]
        assert article.title == record["title"]
        assert article.published is not None and article.published.utcoffset() == timedelta(0)
        assert article.published.date().isoformat() == record["published"][:10]
        paragraphs = [" ".join(p.split()) for p in record["text"].split("\n") if p.strip()]
        assert article.text.split("\n\n") == paragraphs, "ordinary prose must pass through unchanged"
        assert chunk_article(article.text)


# --- bad input ---------------------------------------------------------------------------------------------------
def test_binary_non_utf8_and_empty_files_become_failures(tmp_path):
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Café story\n\nLe café était fermé.".encode("latin-1"))
    empty = tmp_path / "empty.md"
    empty.write_text("  \n\n", encoding="utf-8")
    headline_only = tmp_path / "headline"
    headline_only.write_text("Just a headline\n", encoding="utf-8")
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("Headline\nBody text.", encoding="utf-16")
    cases = [(binary, "binary"), (latin1, "UTF-8"), (empty, "empty"), (headline_only, "no article text"), (utf16, "UTF-16")]
    for path, words in cases:
        results = list(parse_path(path))
        assert len(results) == 1 and isinstance(results[0], ParseFailure), path
        assert results[0].origin == str(path)
        assert words in results[0].reason


def test_missing_folder_and_unsupported_paths_become_failures(tmp_path):
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")
    for path in (tmp_path / "nope.txt", tmp_path, tmp_path / "notes.pdf"):
        results = list(parse_path(path))
        assert len(results) == 1 and isinstance(results[0], ParseFailure)
        assert results[0].origin == str(path)


def test_jsonl_bad_lines_are_reported_and_good_lines_still_parse(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(
        b'{"id": "a1", "title": "First", "text": "It rained.\\nThen it stopped.", "published": "2024-03-01T10:00:00+02:00"}\n'
        b"{not json at all\n"
        b'{"id": "a3", "title": "No text here"}\n'
        b"\n"
        b'{"id": "a5", "title": "Blank", "text": "   "}\n'
        b'["a", "list"]\n'
        b'{"id": "a7", "title": "Caf\xe9", "text": "latin-1 line"}\n'
        b'{"id": 8, "title": "Last", "text": "Still parsed.", "extra": [1, 2], "published": "not a date"}\n'
    )
    results = list(parse_path(corpus))
    articles = [r for r in results if isinstance(r, ParsedArticle)]
    failures = {r.origin: r.reason for r in results if isinstance(r, ParseFailure)}
    assert [a.external_id for a in articles] == ["a1", "8"]
    assert [a.origin for a in articles] == [f"{corpus}:1", f"{corpus}:8"]
    assert set(failures) == {f"{corpus}:{n}" for n in (2, 3, 5, 6, 7)}
    assert "JSON" in failures[f"{corpus}:2"]
    assert "text" in failures[f"{corpus}:3"] and "text" in failures[f"{corpus}:5"]
    assert "UTF-8" in failures[f"{corpus}:7"]
    first = articles[0]
    assert first.text == "It rained.\n\nThen it stopped."
    assert first.published is not None and first.published.isoformat() == "2024-03-01T08:00:00+00:00"
    assert articles[1].published is None  # an unreadable date is dropped, the article kept


def test_binary_and_empty_jsonl_files(tmp_path):
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n\n")
    for path in (binary, empty):
        results = list(parse_path(path))
        assert len(results) == 1 and isinstance(results[0], ParseFailure) and results[0].origin == str(path)


def test_iter_inputs_expands_folders_sorted_and_skips_hidden(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert list(iter_inputs([empty])) == []

    tree = tmp_path / "tree"
    (tree / "b").mkdir(parents=True)
    (tree / ".git").mkdir()
    for name in ("b/z.txt", "b/a.md", "a.jsonl", "c", ".hidden.txt", ".git/x.txt", "LICENSE", "photo.png"):
        (tree / name).write_text("x", encoding="utf-8")
    found = [p.relative_to(tree).as_posix() for p in iter_inputs([tree])]
    assert found == ["a.jsonl", "c", "b/a.md", "b/z.txt"]
    explicit = tree / "photo.png"
    assert list(iter_inputs([explicit, empty])) == [explicit]


# --- plain-text layout -------------------------------------------------------------------------------------------
def write(tmp_path: Path, text: str, name: str = "story.txt") -> ParsedArticle:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return only_article(path)


@pytest.mark.parametrize(
    "opening, dateline, source",
    [
        ("LONDON (Reuters) - Shares fell on Monday.", "LONDON", "Reuters"),
        ("NEW YORK, Feb 26 - Shares fell on Monday.", "NEW YORK, Feb 26", None),
        ("Kabul, Afghanistan (AP) — Shares fell on Monday.", "Kabul, Afghanistan", "AP"),
        ("ST. LOUIS — Shares fell on Monday.", "ST. LOUIS", None),
    ],
)
def test_datelines_are_split_off(tmp_path, opening, dateline, source):
    article = write(tmp_path, f"Markets slide\n\n{opening}\nTraders blamed rates.\n")
    assert article.dateline == dateline
    assert article.source == source
    assert article.text == "Shares fell on Monday.\n\nTraders blamed rates."


def test_an_ordinary_opening_is_not_a_dateline(tmp_path):
    article = write(tmp_path, "Talks\n\nThe U.S. - China talks resumed on Monday.\nBoth sides said so.\n")
    assert article.dateline is None
    assert article.text.startswith("The U.S. - China talks resumed")


def test_generic_furniture_and_credit_lines(tmp_path):
    article = write(
        tmp_path,
        "# Port reopens\n\nBy Jane Doe\n\nThe port reopened on Friday after a week.\n\n"
        "Advertisement\n\nShipping lines said delays would last days.\n\n"
        "Read more: Why ports close\n\n"
        "Staff Writer via AP\n\nMore from the region\n\n- Dam bursts in the north\n- Election set for May\n\n"
        "© 2024 Example News\n",
        name="port.md",
    )
    assert article.title == "Port reopens"
    assert article.author == "Jane Doe"
    assert article.source == "Staff Writer via AP"
    assert article.text == "The port reopened on Friday after a week.\n\nShipping lines said delays would last days."


def test_known_furniture_heading_with_plain_headline_list(tmp_path):
    article = write(
        tmp_path,
        "Rates hold\n\nThe central bank kept rates on hold on Thursday, as markets had expected it would.\n"
        "Reuters\nRelated Stories:\nWill rates fall next year?\nBanks brace for slower growth\n",
    )
    assert article.text == "The central bank kept rates on hold on Thursday, as markets had expected it would."
    assert article.source == "Reuters"


def test_a_list_that_belongs_to_the_story_is_kept(tmp_path):
    article = write(
        tmp_path,
        "Budget passed\n\nParliament passed the budget on Tuesday. It includes:\n- a tax cut for families\n"
        "- more money for schools\n",
    )
    assert "a tax cut for families" in article.text and "more money for schools" in article.text
    assert article.source is None


def test_a_story_ending_in_a_sentence_has_no_credit(tmp_path):
    article = write(tmp_path, "Quiet day\n\nNothing happened.\nEveryone went home early.\n")
    assert article.source is None
    assert article.text == "Nothing happened.\n\nEveryone went home early."


# --- cleaning ----------------------------------------------------------------------------------------------------
def test_clean_text_reflows_wire_copy():
    raw = (
        "Standard Oil Co and BP North America\nInc said they plan to form a venture.\n"
        " BP North America is a subsidiary of British Petroleum Co\nPlc <BP>, which owns 55 pct of <Standard Oil Co>.\n"
        " The non-\nperforming loans -- \nabout 2 mln dlrs -- fell.\n \n Reuter\n"
    )
    assert clean_text(raw) == (
        "Standard Oil Co and BP North America Inc said they plan to form a venture.\n\n"
        "BP North America is a subsidiary of British Petroleum Co Plc (BP), which owns 55 pct of Standard Oil Co.\n\n"
        "The non-performing loans -- about 2 mln dlrs -- fell."
    )


@pytest.mark.parametrize(
    "ending",
    ["\n Reuter", "\n REUTER", "\nREUTER...^M", "\n reuter...", "\n REUTERS", "\n REUTER TAW", "\n More",
     "\n Reuter\n More", "\nREUTER\n Reuter", " REUTER", " REUTER11:43/VB"],
)
def test_signoffs_are_removed(ending):
    assert clean_text("Output rose 5.3 pct in\nFebruary (33.7)." + ending) == "Output rose 5.3 pct in February (33.7)."


def test_reuters_mentioned_in_the_story_is_kept():
    assert clean_text("The deal is off, he\ntold Reuters.\n Reuter") == "The deal is off, he told Reuters."
    assert clean_text("Rates rose, officials told\nReuters\n Reuter").endswith("officials told Reuters")


def test_tags_entities_and_broken_tags():
    assert clean_text("<IBM> said it agreed with <Bank of Tokyo\nLtd> and Volkswagen <VOWG.F> on terms.") == (
        "IBM said it agreed with Bank of Tokyo Ltd and Volkswagen (VOWG.F) on terms."
    )
    assert clean_text("Hanover Corp <MHC) and Olivetti SpA (OLIV.MI> and Cyclops <CYL< rose.") == (
        "Hanover Corp (MHC) and Olivetti SpA (OLIV.MI) and Cyclops (CYL) rose."
    )
    assert clean_text("Shares in Imperial Gas Association.<ICGS.L>. It said") == (
        "Shares in Imperial Gas Association (ICGS.L). It said"
    )
    assert clean_text("Profit &amp; loss &lt;IBM&gt; rose, S&L and AT&T said.") == "Profit & loss IBM rose, S&L and AT&T said."
    assert "<" not in clean_text("worth 3 mln Australian <dlrs from a <Glowtronics unit")


def test_prose_passes_through_apart_from_whitespace():
    prose = 'He said "no."\nThe six - member team ,  which arrived\tlate, won.\n\n\nIt rained — again.'
    assert clean_text(prose) == 'He said "no."\n\nThe six - member team , which arrived late, won.\n\nIt rained — again.'


def test_clean_title_keeps_capitals_and_drops_tag_brackets():
    assert clean_title("STANDARD OIL <SRD> TO FORM\n FINANCIAL  UNIT") == "STANDARD OIL (SRD) TO FORM FINANCIAL UNIT"
    assert clean_title("<NORANDA INC> UNIT SELLS U.S. ASSETS") == "NORANDA INC UNIT SELLS U.S. ASSETS"
    assert clean_title("CLEVITE <CLEV.O) CITES DEBT") == "CLEVITE (CLEV.O) CITES DEBT"
