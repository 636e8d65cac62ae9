"""The briefing service: question in, verbatim passages with their attribution out.

It knows nothing of Telegram. The terminal chat, `briefbot ask` and the Telegram handlers all call it,
so they give the same answers.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, TypeVar

from bot.conversation import ConversationState, Intent, classify, contextual_query
from bot.corpus import Corpus
from bot.retrieval import Retrieval, Retriever
from bot.settings import Settings
from bot.storage import Article, Passage
from index.highlight import best_sentence_spans
from index.sentence_vectors import from_bytes as sentences_from_bytes
from index.query import QUESTION_MAX_WORDS, years_named
from index.types import Speaker

log = logging.getLogger(__name__)



COVERAGE_WEIGHT = 0.3  # evidence = cosine + this * share of the question's rare words in the passage
FOCUS_RELEVANCE_FACTOR = 0.6  # the article in focus needs this share of the usual relevance
FOLLOW_UP_COVERAGE = 0.4  # share of a question's (IDF-weighted) words found in the focus article
TURN_ATTEMPTS = 10  # a conversation turn is run again on the newer state when another replica saved the chat


class BadQuestion(ValueError):
    """The message can't be answered as it stands; the text is safe to show the user."""


@dataclass
class Result:
    """One passage shown to the user, with everything needed to attribute it."""

    rank: int
    score: float
    passage_id: int
    text: str
    highlight: str
    highlight_start: int
    highlight_end: int
    article_id: int
    position: int
    title: str
    source: str | None
    author: str | None
    dateline: str | None
    published: datetime | None
    url: str | None
    speakers: list[Speaker]
    also_carried_by: list[dict] = field(default_factory=list)  # other outlets/articles with the same passage
    copy_ids: list[int] = field(default_factory=list)  # their passage ids, so "More" never shows them again

    def to_json(self) -> dict:
        return {
            "rank": self.rank, "score": round(self.score, 4), "text": self.text, "highlight": self.highlight,
            "passage_id": self.passage_id, "article_id": self.article_id, "position": self.position,
            "title": self.title, "source": self.source, "author": self.author, "dateline": self.dateline,
            "published": self.published.isoformat() if self.published else None, "url": self.url,
            "speakers": [s.as_dict() for s in self.speakers], "also_carried_by": self.also_carried_by,
        }


@dataclass
class Headline:
    article_id: int
    title: str
    source: str | None
    published: datetime | None
    url: str | None

    def to_json(self) -> dict:
        return {"article_id": self.article_id, "title": self.title, "source": self.source,
                "published": self.published.isoformat() if self.published else None, "url": self.url}


@dataclass
class Answer:
    question: str
    answered: bool
    results: list[Result] = field(default_factory=list)
    headlines: list[Headline] = field(default_factory=list)  # offered instead when nothing answers

    def to_json(self) -> dict:
        data = {"question": self.question, "answered": self.answered, "results": [r.to_json() for r in self.results]}
        if not self.answered:
            data["headlines"] = [h.to_json() for h in self.headlines]
        return data


@dataclass
class Reply:
    """What the bot says back to one chat message, before any rendering."""

    kind: str  # answer | declined | more | attribution | neighbour | notice
    message: str  # a short lead line in plain text ("Source of the passage I last showed:")
    answer: Answer
    topic_id: int | None = None  # the question the results belong to, for a "More" button

    def to_json(self) -> dict:
        return {"kind": self.kind, "message": self.message, **self.answer.to_json()}


def _carrier(article: Article) -> dict:
    return {"article_id": article.id, "title": article.title, "source": article.source, "url": article.url,
            "published": _aware(article.published).isoformat() if article.published else None}


def _shown_ids(results: list[Result]) -> list[int]:
    """Passages a reply showed, with the wire copies folded into them."""
    return [i for r in results for i in (r.passage_id, *r.copy_ids)]


def validate_question(question: str, max_chars: int) -> str:
    text = " ".join((question or "").split())
    if not text or not any(ch.isalnum() for ch in text):
        raise BadQuestion("Please type a question, for example: why did Iran strike Pakistan?")
    if len(text) > max_chars:
        raise BadQuestion(
            f"That message is {len(text):,} characters long; please ask in at most {max_chars:,} characters."
        )
    return text


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


F = TypeVar("F", bound=Callable)


def _one_snapshot(method: F) -> F:
    """Answer on the index snapshot the call started on, even if a newer one is swapped in meanwhile."""

    @functools.wraps(method)
    def pinned(self: "BriefingService", *args, **kwargs):
        with self.corpus.reading():
            return method(self, *args, **kwargs)

    return pinned  # type: ignore[return-value]


class BriefingService:
    def __init__(self, corpus: Corpus, settings: Settings):
        self.corpus = corpus
        self.store = corpus.store
        self.settings = settings
        self.retriever = Retriever(corpus)

    # --- one question ---------------------------------------------------------------------------
    @_one_snapshot
    def ask(self, question: str, k: int | None = None, exclude: set[int] | frozenset[int] = frozenset(),
            focus_article: int | None = None, mode: str = "hybrid", now: datetime | None = None) -> Answer:
        """The best `k` passages for `question`, or a plain decline with the latest headlines."""
        text = validate_question(question, self.settings.max_question_chars)
        k = k or self.settings.results_per_answer
        retrieval = self.retriever.retrieve(text, k, exclude, focus_article, mode, now)
        if not retrieval.candidates or not self.answerable(retrieval, focus_article):
            return Answer(question=text, answered=False, headlines=self.latest())
        return Answer(question=text, answered=True, results=self._results(text, retrieval))

    def answerable(self, retrieval: Retrieval, focus_article: int | None = None) -> bool:
        """Whether the passages really answer, or are only the nearest noise.

        Calibrated on dev-qa.jsonl over the seed, gum-news and reuters-dev (docs/measurements.md).

        In a conversation the article under discussion is already known to be relevant, so a passage of it
        needs less similarity to a terse follow-up ("and the other side?") than a stranger would.
        """
        question = retrieval.intent.text
        if (retrieval.newest is not None and len(question.split()) <= QUESTION_MAX_WORDS
                and any(y > retrieval.newest.year for y in years_named(question))):
            return False  # about a year after the newest article: nothing stored can report it
        threshold = self.settings.min_relevance
        if focus_article is not None and retrieval.candidates[0].article_id == focus_article:
            threshold *= FOCUS_RELEVANCE_FACTOR
        return self.evidence(retrieval) >= threshold

    def evidence(self, retrieval: Retrieval) -> float:
        """How well the best candidate answers: its cosine to the question plus a share of the question's
        rare words it contains (a passage that is merely on a similar subject lacks those)."""
        question = retrieval.intent.text
        lexical = self.corpus.lexical
        return max(c.dense + COVERAGE_WEIGHT * lexical.coverage(question, c.passage.text) for c in retrieval.candidates)

    def _results(self, question: str, retrieval: Retrieval) -> list[Result]:
        candidates = retrieval.candidates
        dim = len(retrieval.query_vector)
        spans = best_sentence_spans(question, retrieval.query_vector, [c.passage.text for c in candidates],
                                    self.corpus.highlight_encoder,
                                    [sentences_from_bytes(c.passage.sentence_vectors, dim) for c in candidates])
        results = []
        for rank, (candidate, span) in enumerate(zip(candidates, spans), start=1):
            result = self._result(rank, candidate.score, candidate.passage, candidate.article, span)
            result.also_carried_by = [_carrier(copy.article) for copy in candidate.copies]
            result.copy_ids = [copy.passage_id for copy in candidate.copies]
            results.append(result)
        return results

    @staticmethod
    def _result(rank: int, score: float, passage: Passage, article: Article, span: tuple[int, int]) -> Result:
        start, end = span
        return Result(
            rank=rank, score=score, passage_id=passage.id, text=passage.text, highlight=passage.text[start:end],
            highlight_start=start, highlight_end=end, article_id=article.id, position=passage.position,
            title=article.title, source=article.source, author=article.author, dateline=article.dateline,
            published=_aware(article.published), url=article.url, speakers=passage.speakers,
        )

    def passage_result(self, passage_id: int, rank: int = 1) -> Result | None:
        """One stored passage as a result, unhighlighted (for attribution and neighbour replies)."""
        passage = self.store.passages_by_id([passage_id]).get(passage_id)
        if passage is None:
            return None
        article = self.store.article(passage.article_id)
        return self._result(rank, 1.0, passage, article, (0, len(passage.text)))

    # --- what the bot knows -----------------------------------------------------------------------
    def latest(self, limit: int = 5) -> list[Headline]:
        return [
            Headline(a.id, a.title, a.source, _aware(a.published), a.url) for a in self.store.latest_articles(limit)
        ]

    def sources(self) -> list[tuple[str, int, datetime | None]]:
        return self.store.source_summary()

    def article(self, article_id: int) -> Article | None:
        return self.store.article(article_id)

    # --- a conversation -----------------------------------------------------------------------------
    def load_state(self, chat_id: str) -> ConversationState:
        return self._load(chat_id)[0]

    def _load(self, chat_id: str) -> tuple[ConversationState, int | None]:
        """The chat's state and the version it was stored at (None: nothing stored yet)."""
        row = self.store.load_conversation(chat_id)
        data = json.loads(row.state_json) if row else None
        ttl = timedelta(minutes=self.settings.conversation_ttl_minutes)
        return ConversationState.from_dict(data, ttl), (row.version if row else None)

    def save_state(self, chat_id: str, state: ConversationState, version: int | None) -> bool:
        """Store the state if the chat is still at `version`; False if another process saved it meanwhile."""
        state.updated_at = datetime.now(timezone.utc).isoformat()
        return self.store.save_conversation(chat_id, state.to_dict(), version)

    def _turn(self, chat_id: str, step: Callable[[ConversationState], tuple[Reply, ConversationState]]) -> Reply:
        """One turn of a conversation, saved only if no other process saved the chat since it was read.

        Replicas can get two messages of one chat at the same moment. The second to save finds the version
        moved and runs its turn again on the newer state, so neither message is lost and no reply is built on
        a state that was overwritten. A turn needs one more attempt per turn saved meanwhile, so the attempts
        only run out when more than TURN_ATTEMPTS messages of one chat arrive while one is being answered.
        """
        for attempt in range(1, TURN_ATTEMPTS + 1):
            state, version = self._load(chat_id)
            reply, state = step(state)
            if self.save_state(chat_id, state, version):
                return reply
            log.info("conversation %s changed while answering (attempt %d): answering on the newer state",
                     chat_id, attempt)
            time.sleep(random.uniform(0, 0.01 * attempt))  # let the other writer finish its next turn, if any
        log.warning("conversation %s kept changing; the reply's state was not saved", chat_id)
        return reply

    @_one_snapshot
    def chat(self, chat_id: str, message: str) -> Reply:
        """Answer one message of a conversation: new questions, follow-ups, "more", "who said that?", "what next?"."""
        return self._turn(chat_id, lambda state: self._chat(chat_id, state, message))

    def _chat(self, chat_id: str, state: ConversationState, message: str) -> tuple[Reply, ConversationState]:
        intent = classify(message, state.has_context)
        if intent is Intent.QUESTION and state.focus_article is not None and self._about_focus(message, state):
            intent = Intent.FOLLOW_UP
        if intent is Intent.MORE:
            reply = self._more(chat_id, state, state.topic_id)
        elif intent is Intent.WHO:
            reply = self._who(state)
        elif intent in (Intent.NEXT, Intent.BEFORE):
            reply = self._neighbour(state, +1 if intent is Intent.NEXT else -1)
        else:
            if intent is Intent.FOLLOW_UP:
                validate_question(message, self.settings.max_question_chars)
                query = contextual_query(state.query, message)
                answer = self.ask(query, focus_article=state.focus_article)
            else:
                query = validate_question(message, self.settings.max_question_chars)
                answer = self.ask(query, focus_article=state.focus_article)
            if answer.answered:
                topic = self.store.create_topic(chat_id, query, _shown_ids(answer.results))
                state.query, state.topic_id = query, topic.id
                self._show(state, answer.results)
                reply = Reply("answer", "", answer, topic_id=topic.id)
            else:
                reply = Reply("declined", "I have nothing on that in the articles I know. The latest headlines:", answer)
                if intent is Intent.QUESTION:
                    state = ConversationState()  # a new topic with no answer leaves nothing to follow up
        return reply, state

    @_one_snapshot
    def focus_on(self, chat_id: str, article_id: int) -> Reply:
        """Make an article the conversation's focus (a digest's "Ask about this"), so follow-ups are about it."""
        article = self.store.article(article_id)
        first = self.store.passage_at(article_id, 0) if article else None
        if article is None or first is None:
            return Reply("notice", "That story is no longer stored.", Answer("", False))
        result = self.passage_result(first.id)
        lead = f"Ask me anything about “{article.title}” — for example: why? who said that? what happened next?"

        def step(state: ConversationState) -> tuple[Reply, ConversationState]:
            state.query = article.title
            state.topic_id = self.store.create_topic(chat_id, article.title, [first.id]).id
            self._show(state, [result])
            return Reply("neighbour", lead, Answer(article.title, True, [result]), topic_id=state.topic_id), state

        return self._turn(chat_id, step)

    @_one_snapshot
    def more(self, chat_id: str, topic_id: int | None = None) -> Reply:
        """The "More" button: the next results for a question this chat asked (the current one by default)."""
        return self._turn(chat_id, lambda state: (
            self._more(chat_id, state, topic_id if topic_id is not None else state.topic_id), state))

    def _more(self, chat_id: str, state: ConversationState, topic_id: int | None) -> Reply:
        topic = self.store.topic(topic_id) if topic_id is not None else None
        if topic is None or topic.chat_id != chat_id:
            return Reply("notice", "Ask me a question first, then I can show more.", Answer("", False))
        focus = state.focus_article if topic.id == state.topic_id else None
        answer = self.ask(topic.query, exclude=set(topic.shown), focus_article=focus)
        if not answer.answered:
            return Reply("notice", "That's all I have on this question.", Answer(topic.query, False), topic_id=topic.id)
        self.store.extend_topic(topic.id, _shown_ids(answer.results))
        state.query, state.topic_id = topic.query, topic.id
        self._show(state, answer.results)
        return Reply("more", "", answer, topic_id=topic.id)

    def _who(self, state: ConversationState) -> Reply:
        if not state.last_shown:
            return Reply("notice", "Ask me a question first; then I can tell you who said it.", Answer("", False))
        results = [r for r in (self.passage_result(i, rank) for rank, i in enumerate(state.last_shown, 1)) if r]
        if results and not results[0].speakers:
            # A quote paragraph is often attributed by the next one ('"...," Yeutter said.'): show it too.
            following = self.store.passage_at(results[0].article_id, results[0].position + 1)
            if following is not None and following.speakers and following.id not in state.last_shown:
                results.insert(1, self.passage_result(following.id, 2))
                for rank, result in enumerate(results, start=1):
                    result.rank = rank
        if not results:
            return Reply("notice", "Those passages are no longer stored.", Answer("", False))
        lead = "Who said it, and where:" if len(results) > 1 else "Who said it, and where it was published:"
        return Reply("attribution", lead, Answer(state.query, True, results))

    def _about_focus(self, message: str, state: ConversationState) -> bool:
        """A question whose meaningful words are mostly in the article under discussion continues that
        conversation ("what does the prime minister think?"); one about something else starts afresh."""
        article = self.store.article(state.focus_article)
        if article is None:
            return False
        lexical = self.corpus.lexical
        terms = set(lexical.tokenize(message))
        if not terms:
            return True
        article_terms = set(lexical.tokenize(article.title + " " + article.text))
        total = len(lexical) or 1
        weight = {t: math.log(1 + total / (1 + lexical.document_frequency(t))) for t in terms}
        covered = sum(w for t, w in weight.items() if t in article_terms)
        return covered >= FOLLOW_UP_COVERAGE * sum(weight.values())

    def _neighbour(self, state: ConversationState, step: int) -> Reply:
        if state.focus_article is None or state.focus_position is None:
            return Reply("notice", "Ask me a question first; then I can tell you what came next.", Answer("", False))
        position = state.focus_position + step
        passage = self.store.passage_at(state.focus_article, position) if position >= 0 else None
        if passage is None:
            edge = "the end" if step > 0 else "the beginning"
            return Reply("notice", f"That's {edge} of the article.", Answer(state.query, False))
        result = self.passage_result(passage.id)
        self._show(state, [result])
        if state.topic_id is not None:
            self.store.extend_topic(state.topic_id, [passage.id])
        return Reply("neighbour", "", Answer(state.query, True, [result]), topic_id=state.topic_id)

    @staticmethod
    def _show(state: ConversationState, results: list[Result]) -> None:
        """What the last reply showed becomes the conversation's focus."""
        state.last_shown = [r.passage_id for r in results]
        if results:
            state.focus_article = results[0].article_id
            state.focus_position = results[0].position
