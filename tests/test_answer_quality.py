"""Answer quality rules a reader notices: wire copies once, outlets and dates honoured, honest declines."""

import json
from pathlib import Path

import pytest

from bot.evaluation import contains_answer, evaluate_qa
from bot.service import Answer, Result

WIRE = ("Dock workers at the Port of Saltreach walked off the job on Monday, halting container traffic, "
        "union leader Maria Okafor said.")


def jsonl(path: Path, articles: list[dict]) -> Path:
    path.write_text("".join(json.dumps(a) + "\n" for a in articles), encoding="utf-8")
    return path


def art(i: str, source: str, published: str, text: str, title: str | None = None) -> dict:
    return {"id": i, "title": title or f"Story {i}", "text": text, "source": source, "author": None,
            "published": published, "url": f"https://example.org/{i}", "dateline": None}


@pytest.fixture
def newsroom(make_app, tmp_path):
    app = make_app()
    app.corpus.ingest_paths([jsonl(tmp_path / "news.jsonl", [
        art("a", "Harbour Times", "2026-03-10T08:00:00Z", WIRE + "\n\nShips queued outside the breakwater."),
        art("b", "Coast Herald", "2026-03-10T09:00:00Z", WIRE + "\n\nSupermarkets warned of shortages."),
        art("c", "Coast Herald", "2026-05-02T09:00:00Z",
            "The Saltreach port strike ended on Friday after a pay deal, union leader Maria Okafor said."),
        art("d", "Harbour Times", "2026-04-20T09:00:00Z", "Cocoa arrivals rose to 1,750 tonnes at the port."),
        art("e", "Harbour Times", "2026-04-21T09:00:00Z", "Cocoa arrivals rose to 1,850 tonnes at the port."),
    ])])
    return app


def test_wire_copies_are_shown_once_with_also_carried_by(newsroom):
    answer = newsroom.service.ask("did dock workers at Saltreach walk off the job?", k=3)
    texts = [r.text for r in answer.results]
    assert texts.count(WIRE) == 1
    shown = answer.results[texts.index(WIRE)]
    others = {c["source"] for c in shown.also_carried_by}
    assert others == ({"Harbour Times", "Coast Herald"} - {shown.source})


def test_more_never_shows_a_folded_copy(newsroom):
    service = newsroom.service
    first = service.chat("u", "did dock workers at Saltreach walk off the job?")
    seen = {r.text for r in first.answer.results}
    more = service.chat("u", "more")
    assert not {r.text for r in more.answer.results} & seen


def test_from_an_outlet_narrows_to_it(newsroom):
    answer = newsroom.service.ask("port strike news from Coast Herald")
    assert answer.answered and {r.source for r in answer.results} == {"Coast Herald"}


def test_a_month_narrows_by_date_and_latest_prefers_the_newest(newsroom):
    in_may = newsroom.service.ask("Saltreach port strike in May")
    assert in_may.answered and all(r.published.month == 5 for r in in_may.results)
    latest = newsroom.service.ask("latest on the Saltreach port strike")
    assert latest.results[0].published.month == 5


def test_numbers_match_exactly(newsroom):
    answer = newsroom.service.ask("which port had cocoa arrivals of 1,750 tonnes?", k=1)
    assert "1,750" in answer.results[0].text


def test_a_question_about_a_year_after_the_newest_article_is_declined(newsroom):
    answer = newsroom.service.ask("what did the Saltreach dock workers win in the 2031 strike?")
    assert not answer.answered and answer.headlines


def test_off_topic_question_is_declined_but_on_topic_answered(newsroom):
    assert not newsroom.service.ask("who won the chess olympiad?").answered
    assert newsroom.service.ask("why did the Saltreach strike end?").answered


def test_the_scoring_rule_of_the_dev_sets():
    assert contains_answer("Iran  sent shock\nwaves on Tuesday.", "sent shock waves")
    assert contains_answer("The crane fell as strong winds and heavy rain hit", "strong winds and heavy rain that led the crane to fall")
    assert not contains_answer("Nothing relevant here.", "strong winds and heavy rain")
    assert contains_answer("Standard Oil (SRD) said", "Standard Oil <SRD> said"), "answers are cleaned like articles"


def test_eval_counts_recall_mrr_and_declines():
    def result(text: str) -> Result:
        return Result(rank=1, score=1, passage_id=1, text=text, highlight=text, highlight_start=0,
                      highlight_end=len(text), article_id=1, position=0, title="t", source=None, author=None,
                      dateline=None, published=None, url=None, speakers=[])

    replies = {"q1": Answer("q1", True, [result("x"), result("the answer")]), "q2": Answer("q2", False),
               "q3": Answer("q3", False), "q4": Answer("q4", True, [result("noise")])}
    items = [{"question": "q1", "answer": "the answer", "type": "what"},
             {"question": "q2", "answer": "missing", "type": "what"},
             {"question": "q3", "answer": None, "type": "unanswerable"},
             {"question": "q4", "answer": None, "type": "unanswerable"}]
    report = evaluate_qa(lambda q: replies[q], items).to_json()
    assert report["recall@1"] == 0 and report["recall@3"] == 0.5 and report["mrr"] == 0.25
    assert (report["declined_correctly"], report["unanswerable"], report["wrongly_declined"]) == (1, 2, 1)
