"""`briefbot eval`: answer quality on the development sets, with the scoring rule of ../shared/data/README.md.

A question counts as answered at rank k when one of the first k passages contains the answer span
(whitespace collapsed), or at least 60% of its words when the span crosses a passage boundary. Answers
are cleaned like article text first, so wire-copy tags ("<SVM>" -> "(SVM)") compare as ingested.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from bot.service import Answer, BadQuestion, BriefingService
from index.attribution import extract_speakers, score_speaker_names
from index.cleaning import clean_text

_WORD = re.compile(r"\w+")
KS = (1, 3, 5)


def _collapse(text: str) -> str:
    return " ".join(text.split()).lower()


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def contains_answer(passage: str, answer: str) -> bool:
    """The README's rule for one passage: the span itself, or 60% of its words."""
    span = _collapse(clean_text(answer))
    text = _collapse(passage)
    if span in text:
        return True
    wanted = _words(span)
    if not wanted:
        return False
    present = set(_words(text))
    return sum(1 for w in wanted if w in present) / len(wanted) >= 0.6


def first_hit_rank(texts: list[str], answer: str) -> int | None:
    for rank, text in enumerate(texts, start=1):
        if contains_answer(text, answer):
            return rank
    return None


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class QaReport:
    questions: int
    recall: dict[int, float]
    mrr: float
    unanswerable: int
    declined_correctly: int
    wrongly_declined: int
    answerable: int

    def to_json(self) -> dict:
        return {
            "questions": self.questions, **{f"recall@{k}": round(v, 4) for k, v in self.recall.items()},
            "mrr": round(self.mrr, 4), "unanswerable": self.unanswerable,
            "declined_correctly": self.declined_correctly,
            "declined_share": round(self.declined_correctly / self.unanswerable, 4) if self.unanswerable else None,
            "answerable": self.answerable, "wrongly_declined": self.wrongly_declined,
            "wrongly_declined_share": round(self.wrongly_declined / self.answerable, 4) if self.answerable else None,
        }


def evaluate_qa(ask: Callable[[str], Answer], items: Iterable[dict]) -> QaReport:
    """Recall@1/3/5 and MRR over answerable questions (a decline counts as a miss), and the decline shares."""
    hits = {k: 0 for k in KS}
    reciprocal = 0.0
    answerable = unanswerable = declined_right = declined_wrong = 0
    total = 0
    for item in items:
        total += 1
        answer = ask(item["question"])
        if item.get("type") == "unanswerable" or item.get("answer") is None:
            unanswerable += 1
            declined_right += not answer.answered
            continue
        answerable += 1
        if not answer.answered:
            declined_wrong += 1
            continue
        rank = first_hit_rank([r.text for r in answer.results], item["answer"])
        if rank is not None:
            reciprocal += 1 / rank
            for k in KS:
                hits[k] += rank <= k
    recall = {k: hits[k] / answerable if answerable else 0.0 for k in KS}
    return QaReport(total, recall, reciprocal / answerable if answerable else 0.0, unanswerable, declined_right,
                    declined_wrong, answerable)


def evaluate_dialogues(service: BriefingService, dialogues: Iterable[dict]) -> dict:
    """Each dialogue in a fresh conversation; a turn is right when its first 3 passages contain the answer."""
    turns = right = 0
    per_dialogue = []
    for dialogue in dialogues:
        chat_id = f"eval:{dialogue.get('id')}:{uuid.uuid4().hex[:8]}"
        marks = []
        for turn in dialogue["turns"]:
            turns += 1
            try:
                texts = [r.text for r in service.chat(chat_id, turn["q"]).answer.results[:3]]
            except BadQuestion:
                texts = []
            ok = bool(turn.get("answer")) and first_hit_rank(texts, turn["answer"]) is not None
            right += ok
            marks.append(ok)
        per_dialogue.append({"id": dialogue.get("id"), "turns_right": marks})
    return {"turns": turns, "right": right, "share": round(right / turns, 4) if turns else None,
            "dialogues": per_dialogue}


def evaluate_attribution(items: Iterable[dict]) -> dict:
    """Precision and recall of speaker names on passages given alone (no preceding article text)."""
    gold, predicted = [], []
    for item in items:
        gold.append([s["name"] for s in item.get("speakers") or []])
        predicted.append([s.name for s in extract_speakers(item.get("text") or "")])
    return score_speaker_names(gold, predicted)
