"""The briefing service over the real seed and Wikinews articles, with the real model."""

import pytest

from bot.service import BadQuestion

INTERNAL_SECURITY = "driven by Iran's efforts to reinforce its internal security"


def test_why_did_iran_strike_is_answered_with_attribution(seeded_app):
    answer = seeded_app.service.ask("why did Iran strike?")
    assert answer.answered
    top3 = answer.results[:3]
    hit = [r for r in top3 if INTERNAL_SECURITY in r.text or "Gregory Brew" in r.text]
    assert hit, [r.text[:80] for r in top3]
    result = hit[0]
    names = [s.name for s in result.speakers]
    assert names, "the matching passage carries its speaker"
    assert result.title == "Iran-Pakistan flare-up rooted in borderlands"
    assert result.source == "Agencies Via Xinhua"
    assert result.highlight and result.highlight in result.text


def test_best_sentence_is_the_one_that_answers(seeded_app):
    answer = seeded_app.service.ask("how many people were killed in the Kerman bombing?")
    top = answer.results[0]
    assert "nearly 100 people" in top.highlight


def test_unrelated_question_is_declined_with_headlines(seeded_app):
    answer = seeded_app.service.ask("what is the recipe for banana bread?")
    assert not answer.answered
    assert answer.results == []
    assert answer.headlines, "the latest headlines are offered instead"


@pytest.mark.parametrize("question", ["", "   \n\t ", "???", "x" * 10_000])
def test_bad_questions_get_a_clear_message(seeded_app, question):
    with pytest.raises(BadQuestion) as caught:
        seeded_app.service.ask(question)
    assert "question" in str(caught.value).lower() or "characters" in str(caught.value)


def test_json_shape(seeded_app):
    data = seeded_app.service.ask("why did Iran strike?", k=2).to_json()
    assert data["question"] == "why did Iran strike?" and data["answered"] is True
    assert len(data["results"]) == 2
    first = data["results"][0]
    for key in ("rank", "score", "text", "highlight", "article_id", "title", "source", "author", "published", "url",
                "speakers"):
        assert key in first


def test_conversation_more_who_and_next(seeded_app):
    service = seeded_app.service
    first = service.chat("c1", "what's behind iran's strikes, according to analysts?")
    assert first.kind == "answer"
    shown = {r.passage_id for r in first.answer.results}

    more = service.chat("c1", "more")
    assert more.kind == "more"
    assert not shown & {r.passage_id for r in more.answer.results}, "More never repeats a passage"

    who = service.chat("c1", "who said that?")
    assert who.kind == "attribution"
    assert who.answer.results[0].passage_id == more.answer.results[0].passage_id

    nxt = service.chat("c1", "what happened next?")
    before = more.answer.results[0]
    assert nxt.kind in ("neighbour", "notice")
    if nxt.kind == "neighbour":
        assert nxt.answer.results[0].article_id == before.article_id
        assert nxt.answer.results[0].position == before.position + 1


def test_conversations_are_separate_and_survive_a_restart(seeded_app, make_app, encoder):
    from bot.app import Briefbot

    service = seeded_app.service
    service.chat("alice", "why did Iran strike Pakistan?")
    service.chat("bob", "robotics competition Afghan girls team")
    restarted = Briefbot.open(seeded_app.settings, encoder=encoder).service
    alice = restarted.chat("alice", "who said that?")
    bob = restarted.chat("bob", "who said that?")
    assert alice.kind == bob.kind == "attribution"
    assert "Iran" in alice.answer.results[0].title
    assert "robotics" in bob.answer.results[0].title


def test_follow_up_without_context_is_a_plain_question(seeded_app):
    reply = seeded_app.service.chat("fresh", "more")
    assert reply.kind in ("answer", "declined")


def test_focus_on_an_article_makes_follow_ups_about_it(seeded_app):
    service = seeded_app.service
    article = [h for h in service.latest(30) if h.title.startswith("Iran-Pakistan")][0]
    focus = service.focus_on("digest-user", article.article_id)
    assert focus.answer.results[0].position == 0
    nxt = service.chat("digest-user", "what happened next?")
    assert nxt.kind == "neighbour" and nxt.answer.results[0].position == 1
    assert nxt.answer.results[0].article_id == article.article_id
