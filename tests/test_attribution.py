"""Speaker attribution: who a passage quotes or credits, as a reader of the bot's answers would check it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from index.attribution import attribute_chunks, evaluate_dev_set, extract_speakers, score_speaker_names
from index.types import Chunk, Speaker

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = DATA / "seed"
needs_data = pytest.mark.skipif(not (DATA / "dev-attribution.jsonl").exists(), reason="shared data not available")


def names(speakers: list[Speaker]) -> list[str]:
    return [s.name for s in speakers]


def seed_sentence(containing: str) -> str:
    """The sentence of the seed article that contains `containing` (read from the shared data, never copied)."""
    text = " ".join(p.read_text(encoding="utf-8") for p in SEED.glob("*.txt"))
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if containing in sentence:
            return sentence.strip()
    pytest.skip(f"seed article has no sentence with {containing!r}")


def chunks(*texts: str) -> list[Chunk]:
    out, pos = [], 0
    for i, text in enumerate(texts):
        out.append(Chunk(position=i, text=text, start=pos, end=pos + len(text)))
        pos += len(text) + 1
    return out


# --- the seed article --------------------------------------------------------------------------------------------


@needs_data
def test_seed_analyst_is_named_with_his_affiliation() -> None:
    speakers = extract_speakers(seed_sentence("Gregory Brew"))
    assert len(speakers) == 1
    assert speakers[0].name == "Gregory Brew"
    assert speakers[0].description == "an analyst at international risk consultancy Eurasia Group"
    assert speakers[0].cue == "said"


@needs_data
def test_seed_according_to_officials_insiders_and_analysts_is_credited() -> None:
    speakers = extract_speakers(seed_sentence("according to Iranian officials"))
    assert names(speakers) == ["Iranian officials", "insiders", "analysts"]
    assert {s.cue for s in speakers} == {"according to"}


@needs_data
def test_seed_passages_without_attribution_credit_nobody() -> None:
    assert extract_speakers(seed_sentence("The move deepened worries")) == []


# --- patterns (hand-written sentences) ---------------------------------------------------------------------------


def test_nobody_quoted() -> None:
    assert extract_speakers("Shares of the company rose 5 pct in heavy trading on Tuesday after the merger.") == []
    assert extract_speakers("") == []
    assert extract_speakers("   ") == []


def test_said_with_appositive_and_inverted_said() -> None:
    [s] = extract_speakers('"Prices will rise," said Jane Okafor, a broker at Acme Securities in Lagos.')
    assert (s.name, s.description, s.cue) == ("Jane Okafor", "a broker at Acme Securities in Lagos", "said")
    [s] = extract_speakers("Tom Berg, chief economist of the Nordic Bank, said growth would slow.")
    assert (s.name, s.description) == ("Tom Berg", "chief economist of the Nordic Bank")


def test_according_to_a_title_and_name() -> None:
    [s] = extract_speakers("According to French Ambassador to the United Nations Jean Dupont, talks will resume.")
    assert (s.name, s.description, s.cue) == ("Jean Dupont", "French Ambassador to the United Nations", "according to")


def test_titles_before_names_become_the_description() -> None:
    [s] = extract_speakers("Finance Minister Maria Rossi told reporters the budget was balanced.")
    assert (s.name, s.description, s.cue) == ("Maria Rossi", "Finance Minister", "told reporters")
    [s] = extract_speakers("Acme Corp chairman Hugh Baxter said in a statement that the bid was too low.")
    assert (s.name, s.description, s.cue) == ("Hugh Baxter", "Acme Corp chairman", "said in a statement")


def test_companies_groups_and_anonymous_sources() -> None:
    assert names(extract_speakers("Liberty All-Star Equity Fund said it will pay a dividend.")) == [
        "Liberty All-Star Equity Fund"
    ]
    assert names(extract_speakers("The deal is likely to be approved, analysts and officials said.")) == [
        "analysts",
        "officials",
    ]
    assert names(extract_speakers('"We see no change," an arbitrageur said.')) == ["an arbitrageur"]
    assert names(extract_speakers("A senior official told Reuters the plan had been shelved.")) == [
        "A senior official"
    ]


def test_other_speech_verbs_and_statements() -> None:
    assert names(extract_speakers("The central bank warned that inflation could return.")) == ["The central bank"]
    assert names(extract_speakers("In a statement, Globex Inc said it would appeal.")) == ["Globex Inc"]
    assert names(extract_speakers("Analysts estimated the cost at 2 billion dlrs.")) == ["Analysts"]
    # participles and nouns are not speech: "the recently announced plan", "newspaper reports that"
    assert extract_speakers("The recently announced plan was dropped after newspaper reports that it leaked.") == []


def test_clauses_appositives_and_passives() -> None:
    [s] = extract_speakers("Globex Inc declined to comment on the offer, but said it would meet the bidder.")
    assert s.name == "Globex Inc"
    [s] = extract_speakers("Tom Berg, speaking at a conference in Oslo, said rates would fall.")
    assert s.name == "Tom Berg"
    [s] = extract_speakers("Ann Holt, chairman and chief executive officer said the year started well.")
    assert (s.name, s.description) == ("Ann Holt", "chairman and chief executive officer")
    assert names(extract_speakers("Output will fall, a senior banker was quoted by the Daily Post as saying.")) == [
        "a senior banker",
        "the Daily Post",
    ]
    assert names(extract_speakers("The Acme news agency quoted him as saying the talks failed.")) == [
        "The Acme news agency"
    ]  # "him" is nobody known here
    assert names(extract_speakers("Standard and Poor's Corp said it cut the rating.")) == ["Standard and Poor's Corp"]


def test_run_on_text_stays_fast() -> None:
    import time

    text = "The market was calm today. He said prices would rise. " * 2000
    started = time.perf_counter()
    extract_speakers(text)
    assert time.perf_counter() - started < 2.0


# --- pronouns and carried speakers ---------------------------------------------------------------------------------


def test_he_said_resolves_to_the_previous_speaker() -> None:
    previous = Speaker("Jane Doe", "a spokeswoman for Acme Corp", "said")
    [s] = extract_speakers('"We have nothing to add," she said.', previous_speaker=previous)
    assert (s.name, s.description, s.cue) == ("Jane Doe", "a spokeswoman for Acme Corp", "said")


def test_he_said_without_anyone_to_refer_to_credits_nobody() -> None:
    assert extract_speakers('"We have nothing to add," she said.') == []


def test_pronouns_resolve_within_the_passage() -> None:
    assert names(extract_speakers("Maria Lopez won the race on Sunday. She said the course was fast.")) == [
        "Maria Lopez"
    ]
    assert names(extract_speakers("Globex Inc said sales rose. It said profits would follow.")) == ["Globex Inc"]
    assert names(extract_speakers("Globex Inc said sales rose. The company said profits would follow.")) == [
        "Globex Inc"
    ]
    # a surname after the full name is the same person
    assert names(extract_speakers("Hajime Sato told a news conference the talks failed. Sato said he was sorry.")) == [
        "Hajime Sato"
    ]


def test_attribute_chunks_carries_the_speaker_across_passages() -> None:
    out = attribute_chunks(
        chunks(
            "Acme Corp chief executive John Smith said profits rose 10 pct.",
            "Sales in Europe were flat.",
            '"We expect a better second half," he said.',
        )
    )
    assert [names(list(c.speakers)) for c in out] == [["John Smith"], [], ["John Smith"]]
    assert out[2].speakers[0].description == "Acme Corp chief executive"
    assert [c.position for c in out] == [0, 1, 2]  # copies, in order


# --- scoring ------------------------------------------------------------------------------------------------------


def test_score_matches_names_case_whitespace_and_leading_the_insensitively() -> None:
    result = score_speaker_names([["The US State Department", "Jeff Rathke"]], [["us  state department", "Rathke"]])
    assert result["true_positives"] == 1
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(0.5)


def test_score_counts_over_passages() -> None:
    gold = [["analysts", "officials"], [], ["Reagan"]]
    predicted = [["analysts"], ["the company"], ["Reagan"]]
    result = score_speaker_names(gold, predicted)
    assert (result["true_positives"], result["gold"], result["predicted"]) == (2, 3, 3)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["exact"] == 1
    assert score_speaker_names([[]], [[]])["precision"] == 1.0
    assert score_speaker_names([["X"]], [[]])["recall"] == 0.0
    with pytest.raises(ValueError):
        score_speaker_names([[]], [])


# --- the development set ----------------------------------------------------------------------------------------


@needs_data
def test_dev_set_precision_and_recall() -> None:
    # Measured 0.99 precision / 0.93 recall (see docs/attribution.md). The floors sit a little below that so a
    # regression fails the build; they are guards, not targets.
    result = evaluate_dev_set(DATA)
    assert result["passages"] == 120
    assert result["precision"] >= 0.95, result
    assert result["recall"] >= 0.88, result
