"""Daily digests: what arrived in a window, grouped into stories, ranked, each told by its own central sentences.

Knows nothing of Telegram or schedules. A window's articles are clustered once into stories (a `StoryPool`)
from the passage embeddings already stored at ingest — nothing is re-embedded but the subscriber's topics —
and every topic set is then a cheap filter and re-ranking of that pool, so a fan-out to thousands of
subscribers composes once per distinct topic set, not once per subscriber.

A story is one event: wire copies and the same report from several outlets fall into one cluster whose
sources are listed. Stories rank by how many articles carry them, then by recency. Each shows the one or two
sentences most central to the story, verbatim (never generated), with who said them and where.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Sequence

import numpy as np

from bot.settings import Settings
from bot.storage import Store, bytes_to_matrix
from index.chunker import split_sentences
from index.types import Speaker

log = logging.getLogger(__name__)

DEFAULT_WINDOW = timedelta(hours=24)
MAX_TOPICS = 10
MAX_TOPIC_CHARS = 80
TITLE_LINK = 0.4  # headline tf-idf cosine above which two similar texts are taken to report one event
TOPIC_WORD_BONUS = 0.1  # a topic's own words in the story count on top of the embedding cosine
LEAD_PRIOR = 0.25  # news puts what happened first; the weight was set on gum-news (docs/digests.md)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")
_STOP = frozenset(
    "a an and are as at be been but by did do does for from had has have he her his how i if in into is it its "
    "of on or our she said says that the their them there they this to was we were what when where which who "
    "why will with would you also after before than then these those about over more new mln pct dlrs year "
    "reuter reuters says told one two three".split()
)
_DATELINE_DATE = re.compile(
    r"[,\s]+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2}\b.*$|\s*[-—–]+\s*$"
)
_DATE_ONLY = re.compile(
    r"^\W*(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day,?\s+)?(?:[a-z]+\s+\d{1,2},?\s+\d{4}|\d{1,2}\s+[a-z]+,?\s+\d{4})\W*$",
    re.IGNORECASE,
)


class BadTopics(ValueError):
    """Topics that can't be kept as given; the text is safe to show the user."""


def normalise_topics(raw: Sequence[str] | str, existing: Sequence[str] = (), limit: int = MAX_TOPICS) -> list[str]:
    """Free-text topics, cleaned and de-duplicated. A string is split on commas and semicolons: "oil prices, iran"."""
    items = re.split(r"[,;\n]+", raw) if isinstance(raw, str) else list(raw)
    topics = list(existing)
    seen = {t.lower() for t in topics}
    for item in items:
        topic = " ".join(str(item).split()).strip(" .")
        if not topic:
            continue
        if not any(ch.isalnum() for ch in topic):
            raise BadTopics(f"“{topic[:40]}” isn't a topic — use words, for example: oil prices")
        if len(topic) > MAX_TOPIC_CHARS:
            raise BadTopics(f"A topic can be at most {MAX_TOPIC_CHARS} characters; “{topic[:40]}…” is "
                            f"{len(topic)}. Separate topics with commas.")
        if topic.lower() in seen:
            continue
        seen.add(topic.lower())
        topics.append(topic)
    if len(topics) > limit:
        raise BadTopics(f"You can follow at most {limit} topics; that would make {len(topics)}. "
                        "Remove some with /topics remove …")
    return topics


def topic_key(topics: Sequence[str]) -> str:
    """One key per distinct topic set, whatever the order or case the subscriber typed them in."""
    return json.dumps(sorted({" ".join(t.lower().split()) for t in topics}))


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _iso(value: datetime | None) -> str | None:
    return _aware(value).isoformat() if value else None


def _parse_iso(value: str | None) -> datetime | None:
    return _aware(datetime.fromisoformat(value)) if value else None


def place_of(dateline: str | None) -> str | None:
    """"MANILA, March 1 -" -> "MANILA"; "CHANDIGARH, India, March 7 -" -> "CHANDIGARH, India"."""
    if not dateline:
        return None
    place = _DATELINE_DATE.sub("", dateline.strip()).strip(" ,-—–")
    return place or None


def content_words(text: str) -> list[str]:
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP and len(w) > 2]


def _stems(text: str) -> set[str]:
    """Lower-case words split on hyphens, without a plural "s": "Iran-contra" -> {"iran", "contra"}."""
    words = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOP or len(word) < 2:
            continue
        words.add(word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word)
    return words


def tfidf_similarity(documents: Sequence[Sequence[str]]) -> np.ndarray:
    """Pairwise cosine of tf-idf vectors (idf from these documents), as a dense matrix."""
    from scipy import sparse

    n = len(documents)
    df = Counter(w for doc in documents for w in set(doc))
    vocabulary: dict[str, int] = {}
    rows, cols, values = [], [], []
    for i, doc in enumerate(documents):
        for word, count in Counter(doc).items():
            rows.append(i)
            cols.append(vocabulary.setdefault(word, len(vocabulary)))
            values.append((1 + math.log(count)) * math.log((1 + n) / (1 + df[word])))
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=(n, max(1, len(vocabulary))), dtype=np.float64)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    matrix = sparse.diags(1.0 / norms) @ matrix
    return (matrix @ matrix.T).toarray()


# --- what a digest is -----------------------------------------------------------------------------------------
@dataclass
class StorySource:
    """One article that carries a story."""

    article_id: int
    title: str
    source: str | None
    dateline: str | None
    published: datetime | None
    url: str | None

    def to_json(self) -> dict:
        return {"article_id": self.article_id, "title": self.title, "source": self.source,
                "dateline": self.dateline, "published": _iso(self.published), "url": self.url}

    @classmethod
    def from_json(cls, data: dict) -> "StorySource":
        return cls(data["article_id"], data["title"], data.get("source"), data.get("dateline"),
                   _parse_iso(data.get("published")), data.get("url"))


@dataclass
class Story:
    rank: int
    headline: str
    article_id: int  # the article the key sentences come from: "Ask about this" focuses on it
    sentences: list[str]  # verbatim, in the order the article has them
    speakers: list[Speaker]
    source: str | None
    place: str | None
    published: datetime | None
    url: str | None
    sources: list[StorySource]
    score: float
    topic_similarity: float | None = None

    def to_json(self) -> dict:
        return {
            "rank": self.rank, "headline": self.headline, "article_id": self.article_id,
            "sentences": self.sentences, "speakers": [s.as_dict() for s in self.speakers],
            "source": self.source, "place": self.place, "published": _iso(self.published), "url": self.url,
            "source_count": len(self.sources), "sources": [s.to_json() for s in self.sources],
            "score": round(self.score, 4),
            "topic_similarity": None if self.topic_similarity is None else round(self.topic_similarity, 4),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Story":
        return cls(
            rank=data["rank"], headline=data["headline"], article_id=data["article_id"],
            sentences=list(data["sentences"]), speakers=[Speaker(**s) for s in data.get("speakers", [])],
            source=data.get("source"), place=data.get("place"), published=_parse_iso(data.get("published")),
            url=data.get("url"), sources=[StorySource.from_json(s) for s in data.get("sources", [])],
            score=data.get("score", 0.0), topic_similarity=data.get("topic_similarity"),
        )


@dataclass
class Digest:
    since: datetime
    until: datetime
    topics: list[str]
    stories: list[Story] = field(default_factory=list)
    articles: int = 0  # how many articles arrived in the window (before topics)

    @property
    def empty(self) -> bool:
        return not self.stories

    @property
    def notice(self) -> str:
        """The one short line sent when nothing new matches."""
        if self.stories:
            return ""
        if self.topics and self.articles:
            return f"Nothing new on your topics ({', '.join(self.topics)}) since your last digest."
        return "Nothing new since your last digest."

    def to_json(self) -> dict:
        return {"since": _iso(self.since), "until": _iso(self.until), "topics": self.topics,
                "articles": self.articles, "notice": self.notice, "stories": [s.to_json() for s in self.stories]}

    @classmethod
    def from_json(cls, data: dict) -> "Digest":
        return cls(_parse_iso(data["since"]), _parse_iso(data["until"]), list(data.get("topics", [])),
                   [Story.from_json(s) for s in data.get("stories", [])], data.get("articles", 0))


# --- the window's stories, clustered once ---------------------------------------------------------------------
@dataclass
class _Article:
    id: int
    title: str
    source: str | None
    author: str | None
    dateline: str | None
    published: datetime | None
    url: str | None
    when: datetime
    rows: list[int] = field(default_factory=list)  # indexes into the pool's passage arrays


@dataclass
class _Cluster:
    members: list[int]  # indexes into pool.articles, oldest first
    centroid: np.ndarray
    newest: datetime


class StoryPool:
    """Articles of one window grouped into stories (clusters), ready to be filtered by any topic set."""

    def __init__(self, articles: list[_Article], passages: list[tuple], dim: int, settings: Settings,
                 until: datetime):
        self.settings = settings
        self.until = until
        self.passage_ids = np.array([p[0] for p in passages], dtype=np.int64)
        self.positions = np.array([p[2] for p in passages], dtype=np.int64)
        self.texts = [p[3] for p in passages]
        self.speakers_json = [p[4] for p in passages]
        self.vectors = bytes_to_matrix([p[5] for p in passages], dim)
        self.articles = articles
        self._stories: dict[int, tuple] = {}
        self._words: list[set[str]] | None = None
        self.clusters = self._cluster()
        self.prose = np.array([any(_has_prose(self.texts[r]) for a in c.members for r in self.articles[a].rows)
                               for c in self.clusters], dtype=bool)
        owner = np.full(len(passages), -1, dtype=np.int64)
        for c, cluster in enumerate(self.clusters):
            for a in cluster.members:
                owner[self.articles[a].rows] = c
        self.passage_cluster = owner

    # clustering: one event = similar text (stored passage vectors) under a similar headline
    def _article_vector(self, article: _Article) -> np.ndarray:
        rows = article.rows
        weights = 1.0 / (1.0 + self.positions[rows].astype(np.float32))  # the lead says what the story is
        vector = (self.vectors[rows] * weights[:, None]).sum(axis=0)
        return vector / (np.linalg.norm(vector) or 1.0)

    def _cluster(self) -> list[_Cluster]:
        """Greedy, oldest first: an article joins the story it is linked to with most of its members.

        Two articles are linked when their passage vectors agree (cosine >= the cluster setting) and so do
        their headlines (tf-idf cosine over the window's headlines >= TITLE_LINK). Vectors alone put every
        earnings table or dividend notice of the day into one "story"; headlines alone confuse namesakes.
        """
        n = len(self.articles)
        if not n:
            return []
        vectors = np.vstack([self._article_vector(a) for a in self.articles])
        linked = (vectors @ vectors.T >= self.settings.digest_cluster_similarity) & (
            tfidf_similarity([content_words(a.title) for a in self.articles]) >= TITLE_LINK)
        order = sorted(range(n), key=lambda i: (self.articles[i].when, self.articles[i].id))
        members: list[list[int]] = []
        for i in order:
            best, best_share = -1, 0.5
            for c, group in enumerate(members):
                share = float(linked[i, group].mean())
                if share >= best_share and (best < 0 or share > best_share):
                    best, best_share = c, share
            if best >= 0:
                members[best].append(i)
            else:
                members.append([i])
        clusters = []
        for group in members:
            centroid = vectors[group].sum(axis=0)
            centroid /= np.linalg.norm(centroid) or 1.0
            clusters.append(_Cluster(group, centroid, max(self.articles[a].when for a in group)))
        return clusters

    # ranking
    def base_scores(self) -> np.ndarray:
        """Articles carrying the story, plus a recency term in (0, 1] that halves every 12 hours."""
        scores = np.zeros(len(self.clusters), dtype=np.float64)
        for c, cluster in enumerate(self.clusters):
            age_hours = max(0.0, (self.until - cluster.newest).total_seconds() / 3600)
            scores[c] = len(cluster.members) + 0.5 ** (age_hours / 12)
        return scores

    def topic_similarity(self, topic_vectors: np.ndarray) -> np.ndarray:
        """Per cluster, the best cosine between any topic and any of its passages."""
        result = np.full(len(self.clusters), -1.0, dtype=np.float64)
        if not len(self.clusters) or not len(topic_vectors) or not len(self.vectors):
            return result
        best = (self.vectors @ np.asarray(topic_vectors, dtype=np.float32).T).max(axis=1)
        valid = self.passage_cluster >= 0
        np.maximum.at(result, self.passage_cluster[valid], best[valid].astype(np.float64))
        return result

    def topic_words_present(self, topics: Sequence[str]) -> np.ndarray:
        """1.0 for clusters whose headlines or leads contain every word of one of the topics, else 0.0."""
        if self._words is None:
            self._words = [
                set().union(*(_stems(self.articles[a].title) for a in c.members),
                            *(_stems(self.texts[r]) for a in c.members for r in self.articles[a].rows
                              if self.positions[r] < 2))
                for c in self.clusters
            ]
        wanted = [_stems(t) for t in topics]
        return np.array([float(any(w and w <= words for w in wanted)) for words in self._words])

    def select(self, topic_vectors: np.ndarray | None, limit: int,
               topics: Sequence[str] = ()) -> list[tuple[int, float, float | None]]:
        """(cluster, score, topic similarity) of the best `limit` stories for a topic set.

        Without topics: every story with prose, by sources and recency. With topics: only stories close to
        one of them in meaning (the best passage's cosine, plus TOPIC_WORD_BONUS when the topic's words
        occur in its headline or lead), ranked the same way.
        """
        scores = np.where(self.prose, self.base_scores(), -np.inf)  # a table or a list is no story to tell
        similarity = None
        if topic_vectors is not None and len(topic_vectors):
            similarity = self.topic_similarity(topic_vectors) + TOPIC_WORD_BONUS * self.topic_words_present(topics)
            keep = similarity >= self.settings.digest_topic_min_similarity
            scores = np.where(keep, scores + similarity, -np.inf)
        order = np.argsort(-scores, kind="stable")
        chosen = [int(c) for c in order[:limit] if np.isfinite(scores[c])]
        return [(c, float(scores[c]), None if similarity is None else float(similarity[c])) for c in chosen]

    # one story's words
    def story(self, cluster_index: int, rank: int, score: float, similarity: float | None) -> Story:
        if cluster_index not in self._stories:
            self._stories[cluster_index] = self._story_parts(self.clusters[cluster_index])
        article_index, sentences, speakers = self._stories[cluster_index]
        cluster = self.clusters[cluster_index]
        article = self.articles[article_index]
        sources = sorted((self.articles[a] for a in cluster.members), key=lambda a: (a.when, a.id))
        return Story(
            rank=rank, headline=article.title, article_id=article.id, sentences=sentences, speakers=speakers,
            source=article.source, place=place_of(article.dateline), published=article.published,
            url=article.url or next((a.url for a in sources if a.url), None),
            sources=[StorySource(a.id, a.title, a.source, a.dateline, a.published, a.url) for a in sources],
            score=score, topic_similarity=similarity,
        )

    def _story_parts(self, cluster: _Cluster) -> tuple[int, list[str], list[Speaker]]:
        rows = [r for a in cluster.members for r in self.articles[a].rows]
        owner = {r: a for a in cluster.members for r in self.articles[a].rows}
        texts = [self.texts[r] for r in rows]
        choice = key_sentences(
            texts, self.vectors[rows], self.positions[rows].tolist(),
            documents=[owner[r] for r in rows], max_sentences=2,
        )
        if not choice:
            article_index = cluster.members[-1]
            return article_index, [], []
        picked_rows = [rows[i] for i, _ in choice]
        article_index = owner[picked_rows[0]]
        sentences = [texts[i][s:e] for i, (s, e) in choice]
        speakers = _speakers_of(sentences, [self.speakers_json[r] for r in picked_rows])
        return article_index, sentences, speakers


def _speakers_of(sentences: list[str], speakers_json: list[str]) -> list[Speaker]:
    """Speakers the passage credits whom the chosen sentences themselves name (never someone else's quote)."""
    text = " ".join(sentences).lower()
    found: list[Speaker] = []
    for blob in speakers_json:
        for item in json.loads(blob or "[]"):
            speaker = Speaker(**item)
            words = [w for w in re.findall(r"[\w'-]+", speaker.name.lower()) if len(w) > 2]
            named = speaker.name.lower() in text or (words and words[-1] in text)
            # "Jim Leslie, chairman" and a later "Leslie" are one person: keep the fuller mention
            if named and not any(_same_person(s.name, speaker.name) for s in found):
                found.append(speaker)
    return found


def _same_person(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    return a == b or a in b or b in a


# --- key sentences ----------------------------------------------------------------------------------------------
_FUNCTION_WORDS = frozenset("the a an of to in and said says for on that is was will it its by with from as at".split())


def _is_sentence(text: str) -> bool:
    """Prose worth quoting: not a date line, a heading or a row of a results table ("Shr 12 cts vs 10 cts")."""
    words = text.split()
    if len(words) < 6 or _DATE_ONLY.match(text) or text.isupper():
        return False
    return sum(1 for w in words if w.lower().strip(",.;:\"'()") in _FUNCTION_WORDS) >= 2


def _has_prose(text: str) -> bool:
    return any(_is_sentence(text[s:e]) for s, e in split_sentences(text))


def key_sentences(passages: Sequence[str], vectors: np.ndarray, positions: Sequence[int],
                  documents: Sequence[int] | None = None, max_sentences: int = 2,
                  max_words: int = 60) -> list[tuple[int, tuple[int, int]]]:
    """The story's most central sentences as (passage index, span in that passage), in reading order.

    Centrality without re-embedding: a passage scores by the cosine of its stored vector to the story's
    (lead-weighted) centroid — across wire copies that is the content they share — and each sentence of it
    by how many of the story's salient words it carries (tf·idf over the story's sentences), with a prior for
    the lead, where news puts what happened. A second sentence is added while both stay short.
    """
    if not len(passages):
        return []
    documents = list(documents) if documents is not None else [0] * len(passages)
    positions = list(positions)
    weights = np.array([1.0 / (1.0 + p) for p in positions], dtype=np.float32)
    centroid = (vectors * weights[:, None]).sum(axis=0)
    centroid /= np.linalg.norm(centroid) or 1.0
    passage_centrality = vectors @ centroid

    candidates: list[tuple[int, tuple[int, int], str, int]] = []  # passage, span, text, order in its document
    order_in_doc: Counter = Counter()
    for i, text in enumerate(passages):
        for start, end in split_sentences(text) or [(0, len(text))]:
            sentence = text[start:end]
            if _is_sentence(sentence):
                candidates.append((i, (start, end), sentence, order_in_doc[documents[i]]))
            order_in_doc[documents[i]] += 1
    if not candidates:
        return []
    bags = [Counter(content_words(c[2])) for c in candidates]
    df = Counter(w for bag in bags for w in bag)
    n = len(bags)
    idf = {w: math.log(1 + n / d) for w, d in df.items()}
    story_weight = Counter()
    for bag in bags:
        for w in bag:
            story_weight[w] += idf[w]
    norm = math.sqrt(sum(v * v for v in story_weight.values())) or 1.0

    def lexical(bag: Counter) -> float:
        if not bag:
            return 0.0
        dot = sum(story_weight[w] * idf[w] for w in bag)
        own = math.sqrt(sum((idf[w]) ** 2 for w in bag)) or 1.0
        return dot / (own * norm)

    scored = []
    for (i, span, sentence, order), bag in zip(candidates, bags):
        score = float(passage_centrality[i]) + lexical(bag) + LEAD_PRIOR / (1 + order)
        scored.append((score, i, span, sentence))
    scored.sort(key=lambda item: -item[0])
    best = scored[0]
    chosen = [best]
    words = len(best[3].split())
    for candidate in scored[1 : max_sentences + 4]:
        if len(chosen) >= max_sentences:
            break
        extra = len(candidate[3].split())
        same_text = candidate[3].strip().lower() == best[3].strip().lower()
        same_doc = documents[candidate[1]] == documents[best[1]]
        if same_doc and not same_text and words + extra <= max_words:
            chosen.append(candidate)
            words += extra
    chosen.sort(key=lambda item: (item[1], item[2][0]))
    return [(i, span) for _, i, span, _ in chosen]


# --- composing ------------------------------------------------------------------------------------------------
class DigestComposer:
    """Builds story pools from the store and digests from pools; the encoder is only asked for topic vectors."""

    def __init__(self, store: Store, settings: Settings, encoder: Callable[[], object], dim: int):
        self.store = store
        self.settings = settings
        self._encoder = encoder
        self.dim = dim

    def window(self, until: datetime, since: datetime | None = None) -> tuple[datetime, datetime]:
        until = _aware(until)
        since = _aware(since) if since is not None else until - DEFAULT_WINDOW
        if since >= until:
            since = until - DEFAULT_WINDOW
        return since, until

    def pool(self, since: datetime, until: datetime) -> StoryPool:
        rows = self.store.digest_articles(since, until, self.settings.digest_max_articles)
        articles = {
            r[0]: _Article(r[0], r[1], r[2], r[3], r[4], _aware(r[5]), r[6], _aware(r[5] or r[7])) for r in rows
        }
        passages = [p for p in self.store.digest_passages(articles) if p[5] is not None]
        for index, passage in enumerate(passages):
            articles[passage[1]].rows.append(index)
        kept = [a for a in articles.values() if a.rows]
        return StoryPool(kept, passages, self.dim, self.settings, _aware(until))

    def embed_topics(self, topics: Sequence[str]) -> np.ndarray | None:
        if not topics:
            return None
        return np.asarray(self._encoder().encode(list(topics)), dtype=np.float32)

    def compose(self, pool: StoryPool, topics: Sequence[str], topic_vectors: np.ndarray | None,
                since: datetime, limit: int | None = None) -> Digest:
        limit = limit or self.settings.digest_stories
        chosen = pool.select(topic_vectors if topics else None, limit, topics)
        stories = [pool.story(c, rank, score, sim) for rank, (c, score, sim) in enumerate(chosen, start=1)]
        return Digest(_aware(since), pool.until, list(topics), stories, articles=len(pool.articles))


# --- plain text, for the terminal ---------------------------------------------------------------------------------
def speaker_line(speakers: Sequence[Speaker]) -> str:
    return "; ".join(f"{s.name}, {s.description}" if s.description else s.name for s in speakers)


def where_line(story: Story) -> str:
    """"Reuters, MANILA, 1 Mar 1987" — the outlet, the place and the date that are known."""
    date = story.published.strftime("%-d %b %Y") if story.published else ""
    return ", ".join(p for p in (story.source or "", story.place or "", date) if p)


def render_digest_text(digest: Digest) -> str:
    if digest.empty:
        return digest.notice
    lines = [f"Your briefing: {len(digest.stories)} stories since {digest.since:%-d %b %Y %H:%M} UTC"
             + (f" on {', '.join(digest.topics)}" if digest.topics else "")]
    for story in digest.stories:
        lines.append("")
        lines.append(f"{story.rank}. {story.headline}")
        for sentence in story.sentences:
            lines.append(f"   “{sentence}”")
        if story.speakers:
            lines.append(f"   — {speaker_line(story.speakers)}")
        lines.append(f"   {where_line(story)}" + (f" · {len(story.sources)} sources" if len(story.sources) > 1 else ""))
        if story.url:
            lines.append(f"   {story.url}")
    return "\n".join(lines)
