"""Speaker attribution: who is quoted or credited in a passage of news text.

Every passage the bot shows must say whose words or claims it carries, so this runs over every passage of every
article (the whole Reuters corpus included). It is rule-based and pure Python: a small tokenizer, then the usual
English news patterns around a closed set of attribution cues —

* subject + verb: "X said", "analysts and officials said", "X, a Y, said", "X has said", "X told Reuters",
  "X says/added/noted/warned/announced/estimated/predicted...", "in a statement, X said";
* inverted: '"...," said X, a Y' and "..., said X.";
* prepositional: "according to X", "in the words of X", "quoting X", "quoted X as saying";
* clausal: "X condemned the strikes, saying ...", "X issued a statement", "X's statement added".

A noun phrase found this way is split into the name as the text gives it and the description the text gives
("Italy's Minister of Trade and Industry Paolo Verdi" -> "Paolo Verdi" + "Italy's Minister of Trade and
Industry"; "Ann Holt, an analyst at Acme Research, said" -> "Ann Holt" + "an analyst at Acme Research").
Pronouns ("he said", "it said", "they said") and bare definite descriptions ("the company said", "the newspaper
quoted") are resolved to a compatible speaker found earlier in the passage, then to a person named earlier in the
passage, then to the speakers of earlier passages of the same article.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from index.types import Chunk, Speaker

log = logging.getLogger(__name__)

__all__ = ["extract_speakers", "attribute_chunks", "score_speaker_names", "evaluate_dev_set"]

# ----------------------------------------------------------------------------------------------------------------
# Lexicons. Closed-class words and general news vocabulary only: nothing here names anyone.

_ABBREVIATIONS = (
    "Mr|Mrs|Ms|Messrs|Dr|Prof|Sen|Sens|Rep|Reps|Gov|Gen|Col|Lt|Sgt|Capt|Cmdr|Adm|Maj|Rev|Hon|Pres|Supt|Insp|Det|"
    "St|Mt|Ft|Jr|Sr|Inc|Corp|Co|Cos|Ltd|Plc|Llc|Bros|Pty|Assn|Dept|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|"
    "Dec|No|vs|etc"
)
_TOKEN_RE = re.compile(
    r"(?P<angle><[^<>\n]{1,80}>)"  # Reuters name tags: "<SHV (United Kingdom) Holding Co Ltd>"
    r"|(?P<paren>\((?!\()[^()\n]{1,40}\)|\[[^\[\]\n]{1,12}\])"  # "(IBM)", "(Securities)"
    rf"|(?P<abbr>\b(?:(?:[^\W\d_]\.){{2,}}|(?:{_ABBREVIATIONS})\.|[A-Z]\.(?=\s+[A-Z])))"  # U.S., Mr., K.C., M.
    r"|(?P<word>[^\W_](?:[\w&'’./-]*[^\W_])?(?:(?<=s)['’](?![\w]))?(?:-(?=\s))?)"
    r"|(?P<quote>[\"“”„«»])"
    r"|(?P<punct>[^\s\w])"
)

_DETERMINERS = frozenset(
    "the a an this these those some many several one two three four five six another its their his her our most "
    "few various numerous".split()
)
_NP_PREPS = frozenset("of in at for from".split())  # may sit inside a speaker phrase: "a trader at a trade house"
_TO_HEADS = frozenset(  # "ambassador to the EU", "a source close to the talks"
    "close closest ambassador envoy undersecretary adviser advisor advisers advisors secretary delegate delegates "
    "representative representatives spokesman spokeswoman spokesperson counsel consultant aide aides assistant "
    "attache minister".split()
)
_PRONOUNS = frozenset("he she it they we you him her them us me".split())
_RELATIVES = frozenset("who which".split())
_CONJ_BOUNDARY = frozenset(  # a subject may start right after these
    "and but yet so or nor as while whereas although though because however meanwhile also that if when where "
    "since once even still then moreover furthermore therefore thus instead".split()
)
# Words that are never inside a speaker phrase (closed class, common verbs of the wire, sentence adverbs).
_FUNCTION = frozenset(
    """
    and or but yet so nor that which who whom whose what when where while whereas because although though if unless
    as than then after before since until by on with without into onto over under about against during through
    between among amid despite to upon via per within toward towards across behind beyond around near like
    is was were are be been being am has have had do does did will would can could may might must shall should
    not no also however meanwhile moreover furthermore therefore thus still even only just there here
    when asked who whom
    allegedly reportedly recently today yesterday tomorrow tonight earlier later now already again once ago
    """.split()
)
_VERBS = frozenset(
    """
    said says say told tells tell added adds noted stated explained explains commented argued argues
    claimed insisted insists acknowledged acknowledges confirmed confirms denied denies disclosed warned
    warns announced announces estimated predicted predicts projected wrote writes
    replied replies asserted contended contends indicated indicates criticised criticized urged urges appealed
    conceded cautioned complained admitted suggested suggests expressed stressed stresses emphasised
    emphasized observed remarked spoke quoted quoting reported continued asked described according
    citing speaking writing saying adding noting reporting asked
    rose fell rise rises fall falls gained lost jumped dropped climbed declined increased decreased expects
    expected plans planned made make makes took take takes gave give gives got get gets went go goes came come
    comes held holds hold sent sends won wins met meets left leaves found finds kept keeps began begins agreed
    agrees offered offers sought seeks bought buys sold sells paid pays
    """.split()
)
_STOP = _FUNCTION | _VERBS
_SKIP_BEFORE_VERB = frozenset(  # "X also said", "X have not said", "X today issued", "X have both criticised"
    "also today yesterday tonight recently previously earlier later now again still further separately repeatedly "
    "already publicly privately officially formally initially originally subsequently finally strongly firmly "
    "flatly jointly only both all has have had not never did does do reportedly allegedly once n't here there"
    .split()
)
_TIME_NOUNS = frozenset("morning afternoon evening night week weekend month year".split())
_WEEKDAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday".split())

# Titles and roles written before a name ("Prime Minister Jane Roe", "Professor Hill").
_TITLES = frozenset(
    """
    mr mr. mrs mrs. ms ms. dr dr. prof prof. professor sen sen. senator rep rep. representative gov gov. governor
    gen gen. general col col. colonel lt lt. lieutenant sgt sgt. sergeant capt capt. captain cmdr cmdr. commander
    adm adm. admiral maj maj. major rev rev. reverend hon hon. judge justice president vice premier chancellor
    minister secretary ambassador envoy administrator chairman chairwoman chairperson chief director mayor
    commissioner commissaire king queen prince princess sheikh pope cardinal bishop father sister brother
    emeritus deputy spokesman spokeswoman spokesperson officer inspector detective superintendent treasurer
    undersecretary attorney prosecutor counsel coach manager dame sir lord lady baron chief executive assistant
    adviser advisor
    """.split()
)
# Words that end or mark an organisation, a portfolio or a publication ("Ministry", "Corp", "Herald", "Industry").
_ORG_WORDS = frozenset(
    """
    ministry department office agency commission committee council board bureau authority administration
    government parliament congress senate assembly court tribunal police army navy force forces military
    corp corp. corporation inc inc. co co. cos ltd ltd. plc llc ag sa nv bv gmbh spa ab asa oy kk lp group holding
    holdings company companies bank banks fund trust partners associates brothers bros securities markets
    exchange capital industries industry international institute institution university college school
    association federation union league party foundation society organisation organization centre center centers
    centres church network service services systems airlines railway railways press news times post journal
    herald gazette tribune telegraph guardian daily weekly magazine radio television tv broadcasting
    education health finance defence defense trade commerce agriculture justice interior labour labor energy
    environment transport treasury affairs security development state states nations exchequer
    """.split()
)
# Lowercase role nouns that may follow a capitalised modifier inside a speaker phrase ("Kyodo news agency",
# "a Foreign Ministry spokesman", "French officials").
_ROLE_NOUNS = frozenset(
    """
    spokesman spokeswoman spokesperson spokesmen official officials analyst analysts economist economists trader
    traders dealer dealers source sources officer officers executive executives director directors chairman
    president minister secretary ambassador envoy leader leaders member members manager managers head chief agency
    news newspaper newspapers daily radio television ministry department government diplomat diplomats press
    representative representatives delegate delegates expert experts researcher researchers professor student
    students worker workers union report reports statement police authorities prosecutor prosecutors lawyer
    lawyers attorney attorneys treasurer governor mayor commissioner banker bankers broker brokers arbitrageur
    arbitrageurs investor investors critic critics observer observers correspondent correspondents reporter
    reporters editor editors columnist adviser advisers advisor advisors counsel consultant consultants strategist
    strategists aide aides staff team group company firm bank committee commission council board party military
    army navy forces spokespeople sources insiders residents witnesses scientists researchers doctors
    """.split()
)
_PERSON_NOUNS = frozenset(  # singular heads that are people ("a grain trade source", "A senior French official")
    """
    spokesman spokeswoman spokesperson official analyst economist trader dealer source officer executive director
    chairman president minister secretary ambassador envoy leader member manager head chief diplomat delegate
    representative expert researcher professor student worker prosecutor lawyer attorney treasurer governor mayor
    commissioner banker broker arbitrageur investor critic observer correspondent reporter editor columnist
    adviser advisor consultant strategist aide poster witness resident scientist doctor coauthor author
    """.split()
)
_COMPANY_ANAPHORS = frozenset(  # "the company said" refers back to the organisation named before
    "company firm corporation group concern bank utility airline carrier insurer retailer maker producer "
    "partnership trust fund unit subsidiary parent ministry government agency newspaper paper daily radio "
    "magazine weekly station broadcaster".split()
)
_MODIFIER_SUFFIXES = frozenset(
    "based owned controlled run led backed listed born made registered funded sponsored affiliated linked "
    "speaking educated trained".split()
)
_ROLE_MODIFIERS = frozenset(
    "former acting senior chief deputy vice assistant associate managing general executive retired then now "
    "currently".split()
)
_COMPANY_SUFFIXES = frozenset(
    "co co. cos corp corp. corporation inc inc. ltd ltd. plc llc ag sa nv bv gmbh spa lp sons bros bros. brothers "
    "partners associates cie".split()
)
_TOLD_AUDIENCES = frozenset(  # "told reporters", "told a news conference": part of the cue
    "reporters journalists newsmen correspondents press conference briefing meeting hearing session gathering "
    "forum symposium seminar committee subcommittee panel court parliament congress senate assembly newspaper "
    "magazine agency radio television station interviewer audience crowd members delegates shareholders "
    "stockholders analysts investors legislators lawmakers convention rally".split()
)
_PLAIN_SAY = frozenset("said says say told tells tell added adds".split())  # any subject of these is a speaker
_OTHER_SPEAKERS = frozenset(
    "others study survey poll article articles reports people residents witnesses critics opponents supporters "
    "proponents observers sources newspapers papers countries nations governments members parties groups "
    "organisations organizations companies firms banks unions".split()
)
_DOCUMENT_NOUNS = frozenset("statement report letter filing release announcement website blog communique".split())
_NAME_PARTICLES = frozenset("de du da di del della van von der den la le al el bin ibn und y".split())

_SAY_PAST = frozenset(
    """
    said added noted stated told explained commented argued claimed insisted acknowledged confirmed denied
    disclosed warned announced estimated predicted forecast projected wrote replied asserted contended indicated
    criticised criticized urged appealed conceded cautioned complained admitted suggested expressed stressed
    emphasised emphasized observed remarked spoke continued asked described reported quoted tweeted cited
    repeated reiterated notified
    """.split()
)
_SAY_PRESENT = frozenset(
    """
    says say adds notes states tells tell explains argues claims insists acknowledges confirms denies warns
    announces estimates predicts forecasts writes replies contends indicates suggests stresses reports urges
    tweets reads
    """.split()
)
# Verbs that are also common nouns ("Treasury notes", "insurance claims"): only with "that", a quote or a colon.
_HOMOGRAPHS = frozenset("notes states claims estimates forecasts reports".split())
# Verbs that only attribute speech when a quote follows ("She continued: ...").
_QUOTE_ONLY = frozenset("continued asked replied reads".split())
_INVERTIBLE = frozenset(
    "said says added adds noted notes explained wrote writes continued asked replied argued warned insisted".split()
)
_WITH_PARTICIPLES = frozenset("saying reporting writing noting adding warning claiming arguing".split())
_OPENING_PARTICIPLES = frozenset("writing speaking commenting".split())
_STATEMENT_PPS = frozenset("statement interview filing letter release report".split())

_SENTENCE_END = frozenset(".!?")
_MAX_PHRASE = 24  # tokens: no speaker phrase is longer, and it bounds the work on run-on text
_HARD_PUNCT = frozenset(";:—–()[]{}")

# ----------------------------------------------------------------------------------------------------------------
# Tokens


class _Tok(NamedTuple):
    text: str
    start: int
    end: int
    kind: str  # word | angle | paren | quote | punct
    low: str


def _tokenize(text: str) -> list[_Tok]:
    tokens = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup or "punct"
        if kind == "abbr":
            kind = "word"
        s = m.group()
        tokens.append(_Tok(s, m.start(), m.end(), kind, s.lower()))
    return tokens


def _is_cap(tok: _Tok) -> bool:
    if tok.kind == "angle":
        return True
    if tok.kind == "paren":
        return tok.text[1:2].isupper()
    return tok.kind == "word" and tok.text[:1].isupper() and not _is_hyphen_modifier(tok)


def _is_hyphen_modifier(tok: _Tok) -> bool:
    """"Hamburg-based", "Dallas-based", "Scientology-owned": capitalised, but a modifier and not part of a name."""
    head, _, tail = tok.text.rpartition("-")
    return bool(head) and tail in _MODIFIER_SUFFIXES


def _is_word(tok: _Tok) -> bool:
    return tok.kind in ("word", "angle", "paren")


def _is_stop(tok: _Tok) -> bool:
    """Never inside a speaker phrase. Capitalised, only closed-class words count ("United States" is a name)."""
    if tok.kind != "word":
        return False
    if tok.text == "I":
        return True
    if tok.text[:1].isupper():
        return tok.low in _FUNCTION
    return tok.low in _STOP


def _is_pronoun(tok: _Tok) -> bool:
    """ "he", "It"; not "US" or "IT" (capitals are names)."""
    return tok.kind == "word" and tok.low in _PRONOUNS and not (len(tok.text) > 1 and tok.text.isupper())


def _is_head_noun(low: str) -> bool:
    """A noun that ends a speaker phrase: "officials", "a spokesman", "sources"."""
    if low in ("chief", "head", "executive", "member", "source"):  # "chief economist", "head trader"
        return False
    return low in _PERSON_NOUNS or (low.endswith("s") and low[:-1] in _PERSON_NOUNS) or low in (
        "officials", "sources", "authorities", "police", "newspaper", "agency", "ministry", "government")


def _is_number(tok: _Tok) -> bool:
    return tok.kind == "word" and tok.text[:1].isdigit()


# ----------------------------------------------------------------------------------------------------------------
# Mentions found in the text, before resolution


@dataclass
class _Mention:
    pos: int  # token index, for ordering
    cue: str
    name: str = ""
    description: str | None = None
    pronoun: str | None = None  # "he", "it", "they" ...: to be resolved
    anaphor: list[str] | None = None  # content words of "the company", "the trade source": resolve if possible
    embedded: bool = False  # "what it said": the antecedent is in the same sentence
    sentence: int = 0
    plural: bool = False
    org: bool = False
    person: bool = False


@dataclass
class _Np:
    start: int  # token span [start, end)
    end: int
    stop: str = ""  # what ended a leftward scan: "start" | "boundary" | "other"


@dataclass
class _Known:
    """A speaker with the features pronoun resolution needs."""

    speaker: Speaker
    plural: bool = False
    org: bool = False
    person: bool = False
    pos: int = -1


class _Passage:
    """One passage being analysed: its tokens, sentences and the scans over them. Lives for one call."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self._subjects: dict[int, _Np | None] = {}
        self.sent_of: list[int] = []
        self.sent_starts: list[int] = []
        sent = 0
        self.sent_starts.append(0)
        for i, t in enumerate(self.toks):
            self.sent_of.append(sent)
            if t.kind == "punct" and t.text in _SENTENCE_END and i + 1 < len(self.toks):
                nxt = self._next_real(i + 1)
                if nxt is not None and (self.toks[nxt].text[:1].isupper() or self.toks[nxt].kind == "quote"):
                    sent += 1
                    self.sent_starts.append(i + 1)

    # -- helpers ------------------------------------------------------------------------------------------------

    def _next_real(self, i: int) -> int | None:
        while i < len(self.toks) and self.toks[i].kind == "quote":
            i += 1
        return i if i < len(self.toks) else None

    def sent_lo(self, i: int) -> int:
        return self.sent_starts[self.sent_of[i]]

    def sent_hi(self, i: int) -> int:
        s = self.sent_of[i] + 1
        return self.sent_starts[s] if s < len(self.sent_starts) else len(self.toks)

    def span(self, start: int, end: int) -> str:
        if start >= end:
            return ""
        return self.text[self.toks[start].start : self.toks[end - 1].end]

    def words(self, np: _Np) -> list[_Tok]:
        return self.toks[np.start : np.end]

    # -- leftward noun phrase (the subject of a cue verb) -------------------------------------------------------

    def left_np(self, i: int, lo: int) -> list[_Np]:
        """The noun phrase(s) ending at token i, scanning left no further than lo. Coordinations give several."""
        first = self._left_one(i, lo)
        if first is None:
            return []
        nps = [first]
        j = first.start - 1
        # "analysts and officials", "French officials, bankers and analysts"
        saw_and = False
        while j > lo and nps[-1].stop == "and":
            if self._and_is_internal(j) or self._and_joins_name(j):
                whole = self._left_one(j - 1, lo)
                if whole is None:
                    break
                nps[-1] = _Np(whole.start, nps[-1].end, whole.stop)
                j = whole.start - 1
                continue
            nxt = self._left_one(j - 1, lo)
            if nxt is None or not self._conjunct_ok(nxt):
                break
            right = self.words(nps[-1])
            if nxt.end - nxt.start == 1 and _is_cap(self.toks[nxt.start]) and len(right) >= 2 and (
                _is_cap(right[0]) and not _is_cap(right[-1])
            ):
                # "Japanese and European research officials": coordinated modifiers, one phrase
                nps[-1] = _Np(nxt.start, nps[-1].end, nxt.stop)
                j = nxt.start - 1
                continue
            saw_and = True
            nps.append(nxt)
            j = nxt.start - 1
            if j > lo and self.toks[j].text == "," and saw_and and all(self._list_item(np) for np in nps):
                # "Iranian officials, insiders and analysts"; not "Ann Holt, chairman and chief executive"
                cand = self._left_one(j - 1, lo)
                if cand is not None and self._list_item(cand) and cand.end - cand.start <= 3:
                    if cand.stop in ("start", "boundary", "comma"):
                        nps.append(cand)
                        j = cand.start - 1
        if len(nps) > 1 and not all(self._conjunct_ok(np) for np in nps):
            return [first]
        nps.reverse()
        return nps

    def _list_item(self, np: _Np) -> bool:
        last = self.toks[np.end - 1]
        return self._conjunct_ok(np) and (_is_cap(last) or (last.low.endswith("s") and not last.low.endswith("ss")))

    def _conjunct_ok(self, np: _Np) -> bool:
        words = self.words(np)
        if not words or len(words) > 6:
            return False
        last = words[-1]
        if _is_pronoun(last):
            return False
        return _is_cap(last) or last.low.endswith("s") or last.low in _PERSON_NOUNS

    def _and_is_internal(self, j: int) -> bool:
        """'Minister of International Trade and Industry': an "and" inside a name after "of"."""
        toks = self.toks
        if j + 1 >= len(toks) or not _is_cap(toks[j + 1]):
            return False
        k = j - 1
        while k >= 0 and _is_cap(toks[k]):
            k -= 1
        return k >= 0 and k < j - 1 and toks[k].low == "of"

    def _and_joins_name(self, j: int) -> bool:
        """ "Standard and Poor's Corp", "Miller Tabak Hirsch and Co", "S and P": one company, not two speakers."""
        toks = self.toks
        if j < 1 or j + 1 >= len(toks) or not _is_cap(toks[j - 1]) or not _is_cap(toks[j + 1]):
            return False
        if re.fullmatch(r"[A-Z]{1,2}", toks[j - 1].text) and re.fullmatch(r"[A-Z]{1,2}", toks[j + 1].text):
            return True
        k = j + 1
        while k + 1 < len(toks) and (_is_cap(toks[k + 1]) or toks[k + 1].kind == "paren"):
            k += 1
        return toks[k].kind == "word" and toks[k].low in _COMPANY_SUFFIXES

    def _left_one(self, i: int, lo: int) -> _Np | None:
        toks = self.toks
        lo = max(lo, i - _MAX_PHRASE)  # bounded work on run-on text
        end = i + 1
        j = i
        stop = "start"
        while j >= lo:
            t = toks[j]
            if t.kind in ("angle", "paren"):
                j -= 1
                continue
            if t.kind != "word" or _is_number(t):
                stop = "comma" if t.text == "," else ("boundary" if t.kind == "quote" else "other")
                if t.kind == "punct" and t.text in _SENTENCE_END:
                    stop = "boundary"
                break
            low = t.low
            if low == "and":
                stop = "and" if j < i else "other"
                break
            if low in _DETERMINERS:
                if j - 1 >= lo and self._prep_continues(j - 1, lo):
                    j -= 1
                    continue
                j -= 1
                stop = "det"
                break
            if low in _NP_PREPS or (j - 1 >= lo and self._governed_prep(low, toks[j - 1].low)):
                if j < i and self._prep_continues(j, lo):
                    j -= 1
                    continue
                stop = "prep"
                break
            if _is_stop(t) or _is_pronoun(t):
                stop = "boundary" if low in _CONJ_BOUNDARY else "other"
                break
            j -= 1
        start = j + 1
        if stop == "det":
            # the determiner itself opened the phrase
            stop = self._what_is_left(start - 1, lo)
            if start - 1 >= lo and toks[start - 1].low == "and":
                stop = "and"
        # trim leading prepositions, and participles/adverbs opening a phrase ("Speaking in", "Allegedly ,"),
        # but not modifiers ("banking sources", "highly placed sources")
        while start < end and toks[start].kind == "word" and (
            toks[start].low in _NP_PREPS or toks[start].low.endswith(("ing", "ly")) and toks[start].low not in (
                "italy", "daily", "weekly", "monthly", "quarterly") and (
                start + 1 < end and toks[start + 1].kind == "word"
                and (toks[start + 1].low in _NP_PREPS or toks[start + 1].low in _DETERMINERS))
        ):
            start += 1
            stop = "other"
        if start >= end:
            return None
        words = toks[start:end]
        if all(w.kind == "word" and w.low in _DETERMINERS for w in words):
            return None
        if end - start > 14:
            return None
        return _Np(start, end, stop)

    def _what_is_left(self, j: int, lo: int) -> str:
        if j < lo:
            return "start"
        t = self.toks[j]
        if t.kind == "quote" or (t.kind == "punct" and t.text in _SENTENCE_END):
            return "boundary"
        if t.text == ",":
            return "comma"
        if t.kind == "word" and t.low in _CONJ_BOUNDARY:
            return "boundary"
        return "other"

    @staticmethod
    def _governed_prep(prep: str, head: str) -> bool:
        """ "ambassador to the EU", "close to the talks", "an economist with Acme Bank"."""
        if prep == "to":
            return head in _TO_HEADS
        if prep == "with":
            return head in _PERSON_NOUNS or head in _ROLE_NOUNS
        return False

    def _prep_continues(self, j: int, lo: int) -> bool:
        """Is toks[j] a preposition inside the phrase (with a phrase word to its left)?"""
        toks = self.toks
        t = toks[j]
        if t.kind != "word":
            return False
        if not (t.low in _NP_PREPS or (j - 1 >= lo and self._governed_prep(t.low, toks[j - 1].low))):
            return False
        if j - 1 < lo:
            return False
        left = toks[j - 1]
        return _is_word(left) and not _is_stop(left) and not _is_pronoun(left) and left.low not in _DETERMINERS

    # -- rightward noun phrase (after "according to", inverted "said X") -------------------------------------------

    def right_np(self, i: int, hi: int | None = None) -> _Np | None:
        toks = self.toks
        hi = min(len(toks) if hi is None else hi, i + _MAX_PHRASE)
        j = i
        has_of = False
        last_cap = False
        last_low = ""
        while j < hi:
            t = toks[j]
            if t.kind in ("angle", "paren"):
                if t.kind == "paren" and j == i:
                    break
                last_cap = True
                j += 1
                continue
            if t.kind != "word":
                break
            low = t.low
            if low in _DETERMINERS:
                if j == i or last_low in _NP_PREPS or last_low == "to":
                    j += 1
                    last_low = low
                    last_cap = False
                    continue
                break
            if low in _NP_PREPS or self._governed_prep(low, last_low):
                if j == i or j + 1 >= hi:
                    break
                nxt = toks[j + 1]
                if not _is_word(nxt) or _is_stop(nxt) or _is_pronoun(nxt):
                    break
                if last_cap and not (_is_cap(nxt) or (nxt.low in _DETERMINERS and j + 2 < hi and _is_cap(toks[j + 2]))):
                    break
                has_of = has_of or low == "of"
                j += 1
                last_low = low
                continue
            if low == "and":
                if last_cap and j + 1 < hi and _is_cap(toks[j + 1]) and (has_of or self._and_joins_name(j)):
                    j += 1
                    last_low = low
                    continue
                break
            if _is_stop(t) or _is_pronoun(t):
                break
            if not _is_cap(t):
                prev = toks[j - 1] if j > i else None
                after_cap = last_cap and prev is not None and not prev.low.endswith(("'s", "’s", "s'"))
                if after_cap and low not in _ROLE_NOUNS and not self._role_ahead(j, hi):
                    break
                if _is_head_noun(last_low) and low not in _ROLE_NOUNS:
                    break  # "officials refused": the phrase ended at its head noun
                if low.endswith("ed") and j > i and last_low not in _DETERMINERS and not last_low.endswith("ly"):
                    break  # "the task force called for": a verb, not a modifier ("a retired", "highly placed")
                if low.endswith("ly") and j > i and last_low not in _DETERMINERS:
                    break
                last_cap = False
            else:
                last_cap = True
            last_low = low
            j += 1
        # never end on a preposition or determiner
        while j > i and toks[j - 1].kind == "word" and (toks[j - 1].low in _NP_PREPS or toks[j - 1].low in _DETERMINERS
                                                        or toks[j - 1].low in ("and", "to")):
            j -= 1
        if j <= i or j - i > 14:
            return None
        return _Np(i, j)

    def _role_ahead(self, j: int, hi: int) -> bool:
        """ "French cereal organisation officials": lowercase modifiers after a capital, ending in a role noun."""
        for k in range(j, min(hi, j + 4)):
            t = self.toks[k]
            if t.kind != "word" or not t.text[:1].islower() or _is_stop(t) or t.low in _NP_PREPS:
                return False
            if t.low in _ROLE_NOUNS or (t.low.endswith("s") and t.low[:-1] in _PERSON_NOUNS):
                return True
        return False

    # -- the subject at the start of a sentence ---------------------------------------------------------------

    def sentence_subject(self, s: int) -> _Np | None:
        """The noun phrase opening sentence s, after connectives and a short leading adverbial ("Two days later,")."""
        if s not in self._subjects:
            self._subjects[s] = self._sentence_subject(s)
        return self._subjects[s]

    def _sentence_subject(self, s: int) -> _Np | None:
        lo = self.sent_starts[s]
        hi = self.sent_starts[s + 1] if s + 1 < len(self.sent_starts) else len(self.toks)
        i = lo
        toks = self.toks
        while i < hi and (toks[i].kind == "quote" or (toks[i].kind == "word" and toks[i].low in _CONJ_BOUNDARY)):
            i += 1
            if i < hi and toks[i].text == ",":
                i += 1
        # a leading adverbial up to the first comma: "On Thursday,", "Two days later,", "Allegedly,"
        for k in range(i, min(hi, i + 7)):
            if toks[k].text == ",":
                first = toks[i]
                if first.kind == "word" and (
                    first.low in _STOP or first.low in _NP_PREPS or first.low.endswith(("ly", "ing"))
                    or first.text[:1].isdigit() or first.low in _DETERMINERS or first.low in _WEEKDAYS
                    or first.low in ("last", "next", "earlier", "later")
                ):
                    i = k + 1
                break
            if not _is_word(toks[k]):
                break
        if i >= hi:
            return None
        if _is_pronoun(toks[i]):
            return _Np(i, i + 1)
        return self.right_np(i, hi)


# ----------------------------------------------------------------------------------------------------------------
# From a phrase to a Speaker


def _tok_is_title(tok: _Tok) -> bool:
    return tok.kind == "word" and tok.low.rstrip(".") in _TITLES or tok.low in _TITLES


def _tok_is_org(tok: _Tok) -> bool:
    return tok.kind == "angle" or (tok.kind == "word" and tok.low.rstrip(".") in _ORG_WORDS)


def _looks_like_person_name(words: Sequence[_Tok]) -> bool:
    """1-3 capitalised words (initials allowed), no organisation or title words: "Ann Holt", "J.R. Smith"."""
    if not 1 <= len(words) <= 4:
        return False
    full = [w for w in words if not re.fullmatch(r"(?:[A-Z]\.)+", w.text)]
    if not 1 <= len(full) <= 3:
        return False
    return all(
        w.kind == "word" and _is_cap(w) and not _tok_is_org(w) and not _tok_is_title(w) and not _is_number(w)
        and not w.low.endswith(("'s", "’s"))
        for w in words
    )


def _clean(s: str) -> str:
    s = re.sub(r"\s+", " ", s).strip(" ,;:")
    return re.sub(r"\b(Inc|Corp|Co|Ltd|Plc|Bros|Cos)\.$", r"\1", s)  # "... Lambert Inc." at a sentence end


def _split_phrase(p: _Passage, np: _Np) -> tuple[str, str | None, dict]:
    """Split a speaker phrase into (name as given, description or None, features)."""
    toks = p.toks[np.start : np.end]
    feats = {"plural": False, "org": False, "person": False}
    if len(toks) == 1 and toks[0].kind == "angle":
        feats["org"] = True
        return toks[0].text[1:-1].strip(), None, feats
    # the trailing run of capitalised words (with particles, "of", "and", "in" between capitals) = a proper name
    k = len(toks)
    while k > 0:
        t = toks[k - 1]
        if _is_cap(t):
            k -= 1
            continue
        if (
            t.kind == "word" and k - 1 > 0 and k < len(toks) and _is_cap(toks[k])
            and (t.low in ("of", "and", "in", "for", "at") or t.low in _NAME_PARTICLES)
            and _is_cap(toks[k - 2])
        ):
            k -= 1
            continue
        if (  # "John Smith of the Ministry of Finance"
            t.kind == "word" and t.low == "the" and k - 2 > 0 and k < len(toks) and _is_cap(toks[k])
            and toks[k - 2].low in ("of", "for", "at", "in") and _is_cap(toks[k - 3])
        ):
            k -= 2
            continue
        break
    # the run must start on a capital
    while k < len(toks) and not _is_cap(toks[k]):
        k += 1
    run = toks[k:]
    before = toks[:k]
    # a name inside a prepositional phrase of a common noun: "sources in Paris", "a spokesman for IBM"
    in_pp = False
    b = len(before) - 1
    if b >= 0 and before[b].kind == "word" and before[b].low in _DETERMINERS:
        b -= 1
    if b >= 1 and before[b].kind == "word" and (before[b].low in _NP_PREPS or before[b].low == "to"):
        in_pp = before[b - 1].kind == "word" and before[b - 1].text[:1].islower()
    if not run or in_pp or (run and run[-1].kind == "paren" and len(run) == 1):
        # a common-noun phrase: "a trader", "a spokesman for IBM", "diplomatic sources in Paris"
        name_toks = toks
        desc = None
        for idx, t in enumerate(toks):
            if idx > 0 and t.kind == "word" and t.low == "for":
                name_toks, desc = toks[:idx], p.span(np.start + idx, np.end)
                break
        head = next((t for t in reversed(name_toks) if t.kind == "word" and t.low not in _NP_PREPS), None)
        if head is not None:
            feats["plural"] = head.low.endswith("s") and not head.low.endswith("ss") and head.low not in _PERSON_NOUNS
            feats["person"] = head.low in _PERSON_NOUNS
            feats["org"] = head.low in _COMPANY_ANAPHORS or head.low in _ORG_WORDS or head.low in _DOCUMENT_NOUNS
        name = p.span(np.start, np.start + len(name_toks))
        return _clean(name), desc, feats
    name_start = k  # index into toks
    # (2) "Ann Holt of Acme Securities", "Tom Berg for the Nordic Bank"
    for i, t in enumerate(run):
        if t.kind == "word" and (t.low in ("of", "for") and i >= 2 or t.low == "at" and i >= 1) and (
            _looks_like_person_name(run[:i])
        ):
            desc_parts = [p.span(np.start, np.start + k)] if k else []
            desc_parts.append(p.span(np.start + k + i, np.end))
            feats["person"] = True
            name = p.span(np.start + k, np.start + k + i)
            return _clean(name), _clean(" ".join(desc_parts)) or None, feats
    # (1) a person name after the last title/organisation word of the run: "Prime Minister Jane Roe"
    last_marker = max((i for i, t in enumerate(run) if _tok_is_title(t) or _tok_is_org(t)), default=-1)
    tail = run[last_marker + 1 :]
    affiliation = tail[-1] if tail and tail[-1].kind == "paren" and len(tail) > 1 else None  # "(R-Iowa)"
    if affiliation is not None:
        tail = tail[:-1]
    person_words = [t for t in tail if t.kind == "word"]
    # after an organisation word, only a full name counts: "... Trade and Industry Paolo Verdi", not "Security
    # Pacific"; after a title, a surname is enough: "Professor Hill"
    min_len = 1 if any(_tok_is_title(t) for t in run[: last_marker + 1]) else 2
    if last_marker >= 0 and len(tail) >= min_len and len(person_words) == len(tail) and _looks_like_person_name(tail):
        name_start = k + last_marker + 1
        feats["person"] = True
        if affiliation is not None:
            name = p.span(np.start + name_start, np.end - 1)
            desc = _clean(f"{p.span(np.start, np.start + name_start)} {affiliation.text}")
            return _clean(name), desc or None, feats
    else:
        # (1b) four or more capitalised words ending a phrase: keep the last two ("... to the United States Ann Holt")
        caps = 0
        for t in reversed(run):
            if t.kind == "word" and _is_cap(t) and t.low not in ("of", "and", "in", "for"):
                caps += 1
            else:
                break
        if caps >= 4 and not _tok_is_org(run[-1]):
            keep = 3 if re.fullmatch(r"(?:[A-Z]\.)+", run[-2].text) else 2
            name_start = k + len(run) - keep
            feats["person"] = True
        else:
            # (3) the whole run: an organisation or a plain name (either: "Dean Witter", "Ann Holt")
            if any(_tok_is_org(t) for t in run):
                feats["org"] = True
                feats["name_org"] = True
            if len(run) == 1 and not before and run[0].low.endswith("s") and run[0].low[:-1] in _PERSON_NOUNS:
                feats["plural"] = True  # "Analysts", "Dealers" opening a sentence
            # keep "the" with an organisation, as the text gives it: "the Bank of England"
            if before and before[-1].kind == "word" and before[-1].low == "the" and len(before) == 1:
                name_start = 0
                feats["org"] = True
    name = p.span(np.start + name_start, np.end)
    desc = p.span(np.start, np.start + name_start) if name_start > 0 else ""
    desc = re.sub(r"^(?:the|The)\s+(?=[a-z])", "", _clean(desc)) if desc else ""
    role_words = desc.lower().split() if desc else []
    if not feats.pop("name_org", False) and any(w in _PERSON_NOUNS or w in _TITLES for w in role_words):
        feats["person"] = True
    feats.pop("name_org", None)
    return _clean(name), desc or None, feats


# ----------------------------------------------------------------------------------------------------------------
# Finding mentions


class _Finder:
    def __init__(self, p: _Passage) -> None:
        self.p = p
        self.mentions: list[_Mention] = []

    def run(self) -> list[_Mention]:
        toks = self.p.toks
        for i, t in enumerate(toks):
            if t.kind != "word":
                continue
            low = t.low
            if (low in _SAY_PAST or low in _SAY_PRESENT) and t.text.islower():  # not "United States"
                self._verb(i)
            elif low == "according" and i + 1 < len(toks) and toks[i + 1].low == "to":
                self._prepositional(i, i + 2, "according to")
            elif low == "quoting":
                self._prepositional(i, i + 1, "quoting")
            elif low == "words" and i >= 2 and toks[i - 1].low == "the" and toks[i - 2].low == "in" and (
                i + 1 < len(toks) and toks[i + 1].low == "of"
            ):
                self._prepositional(i - 2, i + 2, "in the words of")
            elif low == "saying" and i > 0 and toks[i - 1].text == ",":
                self._saying(i)
            elif low == "issued" and i + 2 < len(toks) and toks[i + 1].low in ("a", "an") and toks[i + 2].low in (
                "statement", "communique", "announcement"
            ):
                self._subject(i, f"issued a {toks[i + 2].low}")
            elif low == "pointed" and i + 1 < len(toks) and toks[i + 1].low == "out":
                self._subject(i, "pointed out")
            elif low in _WITH_PARTICIPLES and i > 0:
                self._with_participle(i)
            elif low in _OPENING_PARTICIPLES and (i == 0 or i == self.p.sent_lo(i)):
                self._opening_participle(i)
        return self.mentions

    # -- cue handlers -------------------------------------------------------------------------------------------

    def _verb(self, v: int) -> None:
        toks = self.p.toks
        low = toks[v].low
        nxt = toks[v + 1] if v + 1 < len(toks) else None
        nxt2 = toks[v + 2] if v + 2 < len(toks) else None
        if low == "quoted":
            self._quoted(v)
            return
        if low == "reported" and nxt is not None and nxt.low == "as" and nxt2 is not None and nxt2.low == "saying":
            self._passive_subject(v, "reported as saying")  # "the minister was reported as saying"
            return
        if nxt is not None and nxt.low == "by":
            # passive: "the plan was announced by the Acme Association" credits the agent
            if v > 0 and toks[v - 1].low in ("was", "were", "been", "is", "are", "be"):
                agent = self.p.right_np(v + 2, self.p.sent_hi(v))
                if agent is not None and self._speaker_like(agent):
                    self._add_np(agent, f"{low} by")
            return
        quote_next = nxt is not None and (nxt.kind == "quote" or nxt.text == ":" or (
            nxt.text == "," and nxt2 is not None and nxt2.kind == "quote"))
        if low in _QUOTE_ONLY and not quote_next:
            return
        if low in _HOMOGRAPHS:
            # a verb only after a proper name or pronoun, before "that" or a quote: "Microsoft says that",
            # not "newspaper reports that" or "Treasury notes"
            prev = toks[v - 1] if v > 0 else None
            if not (quote_next or (nxt is not None and nxt.low == "that")) or prev is None:
                return
            if not (_is_pronoun(prev) or (_is_cap(prev) and prev.low not in _ROLE_NOUNS)):
                return
        if low in ("forecast", "forecasts", "estimates") and v > 0 and toks[v - 1].low.endswith(("'s", "’s")):
            return  # "the Department's forecast that"
        if low == "described" and not any(t.low == "as" for t in toks[v + 1 : v + 7]):
            return  # "described X as ..."
        if low in ("forecast", "estimated", "projected", "stated", "noted", "added", "expressed") and v > 0 and (
            toks[v - 1].low in _DETERMINERS
        ):
            return  # "an estimated 500", "the stated aim"
        cue = self._cue_text(v)
        self._subject(v, cue, invertible=low in _INVERTIBLE, strict=low not in _PLAIN_SAY)

    def _cue_text(self, v: int) -> str:
        toks = self.p.toks
        verb = toks[v].text if not toks[v].text[:1].isupper() else toks[v].low
        if toks[v].low in ("told", "tells", "tell"):
            # "told Reuters", "told reporters", "told a High Court hearing", "told the House Ways and Means Committee"
            k = v + 1
            while k < len(toks) and k <= v + 7 and toks[k].kind in ("word", "paren") and not (
                toks[k].low in ("that", "on", "in", "at", "when", "after", "before", "by", "it", "he", "she", "they")
                or (toks[k].text[:1].islower() and toks[k].low in _VERBS)
            ):
                k += 1
            words = toks[v + 1 : k]
            while words and not (_is_cap(words[-1]) or words[-1].low in _TOLD_AUDIENCES):
                words = words[:-1]
            if words and (all(_is_cap(w) or w.low in _DETERMINERS or w.low in ("and", "of", "for") for w in words)
                          or words[-1].low in _TOLD_AUDIENCES):
                return f"{verb} {self.p.span(v + 1, v + 1 + len(words))}"
            return verb
        if v + 3 < len(toks) and toks[v + 1].low == "in" and toks[v + 2].low in ("a", "an", "its", "their", "his",
                                                                                  "her"):
            k = v + 3
            while k < len(toks) and k < v + 6 and toks[k].kind == "word" and toks[k].low not in _STATEMENT_PPS:
                k += 1
            if k < len(toks) and toks[k].kind == "word" and toks[k].low in _STATEMENT_PPS:
                return f"{verb} {self.p.span(v + 1, k + 1)}"
        return verb

    def _subject(self, v: int, cue: str, invertible: bool = False, strict: bool = True) -> None:
        """The subject left of cue verb v. `strict`: for verbs that are also participles or take any subject
        ("estimated", "announced", "indicated"), only a phrase that can be a speaker counts."""
        p = self.p
        toks = p.toks
        lo = p.sent_lo(v)
        i = v - 1
        aux = False
        # skip adverbs, auxiliaries and short time phrases between subject and verb
        while i >= lo:
            t = toks[i]
            if t.kind == "word" and t.low in _SKIP_BEFORE_VERB:
                aux = aux or t.low in ("has", "have", "had")
                i -= 1
                continue
            if t.kind == "word" and t.low in _TIME_NOUNS and i - 1 >= lo and toks[i - 1].low in ("this", "last"):
                i -= 2
                continue
            if t.kind == "word" and t.low in _WEEKDAYS and i - 1 >= lo and toks[i - 1].low == "on":
                i -= 2
                continue
            if t.text == "," and i - 2 >= lo and toks[i - 1].low in ("however", "meanwhile", "too") and (
                toks[i - 2].text == ","
            ):
                i -= 3
                continue
            break
        if i < lo:
            if invertible:
                self._inverted(v, cue, after_quote=True)
            return
        t = toks[i]
        if t.kind == "word" and t.low in ("and", "but") and i - 1 >= lo:
            # "Smith declined to comment but said ...", "The panel called for reform and said ...": the sentence's
            # subject speaks
            self._clause_subject(v, cue, strict)
            return
        if t.kind == "word" and t.low in _RELATIVES:
            j = i - 1
            if j >= lo and toks[j].text == ",":
                j -= 1
            if j >= lo:
                for np in p.left_np(j, lo):
                    if not strict or self._speaker_like(np):
                        self._add_np(np, cue)
            return
        if _is_pronoun(t) and t.low not in ("him", "them", "us", "me", "you", "we"):
            embedded = i - 1 >= lo and toks[i - 1].kind == "word" and toks[i - 1].low in ("what", "which", "that")
            self.mentions.append(_Mention(i, cue, pronoun=t.low, embedded=embedded, sentence=p.sent_of[i]))
            return
        if t.text == ",":
            if self._chain(i, v, cue, aux or toks[v].low in _SAY_PRESENT, strict):
                return
            if invertible:
                self._inverted(v, cue, after_quote=i - 1 >= 0 and toks[i - 1].kind == "quote")
            return
        if t.kind == "quote":
            if invertible:
                self._inverted(v, cue, after_quote=True)
            return
        if not _is_word(t) or _is_stop(t) or (t.kind == "word" and t.low in _DETERMINERS):
            return  # "the recently announced agreement"
        if strict and i == v - 1 and t.low.endswith(("'s", "’s")) and i - 1 >= lo and (
            toks[i - 1].low in _NP_PREPS or toks[i - 1].low in _DETERMINERS or _is_stop(toks[i - 1])
        ):
            return  # "in view of GM's announced goal"
        nps = p.left_np(i, lo)
        if strict:
            nps = [np for np in nps if self._speaker_like(np)]
        if not nps:
            return
        if self._missing_comma(_Np(nps[0].start, nps[-1].end, nps[0].stop), cue):
            return
        # "Smith's statement added": credit the possessor
        if len(nps) == 1:
            words = p.words(nps[0])
            if len(words) >= 2 and words[-1].low in _DOCUMENT_NOUNS and words[-2].low.endswith(("'s", "’s")):
                owner = _Np(nps[0].start, nps[0].end - 1)
                name, desc, feats = _split_phrase(p, owner)
                self._emit(owner.start, re.sub(r"['’]s$", "", name), desc, cue, feats)
                return
        for np in nps:
            self._add_np(np, cue)

    def _missing_comma(self, np: _Np, cue: str) -> bool:
        """ "George Hoffman, director of commodity analysis for Pillsbury said": an appositive whose closing comma
        is missing. Credit the name before it, with the role as description."""
        p = self.p
        toks = p.toks
        first = toks[np.start]
        if np.stop != "comma" or first.kind != "word" or not first.text[:1].islower() or first.low in _DETERMINERS:
            return False
        if not (first.low in _ROLE_NOUNS or first.low in _PERSON_NOUNS or first.low in _TITLES):
            return False
        comma = np.start - 1
        lo = p.sent_lo(comma)
        hosts = p.left_np(comma - 1, lo) if comma - 1 >= lo else []
        if len(hosts) != 1 or not _is_cap(toks[hosts[0].end - 1]) or hosts[0].stop not in ("start", "boundary"):
            return False
        self._add_np(hosts[0], cue, extra_desc=p.span(np.start, np.end))
        return True

    def _speaker_like(self, np: _Np) -> bool:
        """Can this phrase be someone who speaks? A name, or a head noun for people, groups or documents."""
        last = self.p.toks[np.end - 1]
        if last.kind in ("angle", "paren") or (_is_cap(last) and not _is_number(last)):
            return True
        low = last.low
        return (
            low in _ROLE_NOUNS or low in _PERSON_NOUNS or low in _COMPANY_ANAPHORS or low in _DOCUMENT_NOUNS
            or low in _ORG_WORDS
            or (low.endswith("s") and low[:-1] in _PERSON_NOUNS) or low in _OTHER_SPEAKERS
        )

    def _chain(self, comma: int, v: int, cue: str, loose: bool, strict: bool = False) -> bool:
        """ "X, a Y, said" / "X, who ..., said" / "X, has said": find the host phrase left of the appositives."""
        p = self.p
        toks = p.toks
        lo = p.sent_lo(v)
        segments: list[tuple[int, int]] = []
        end = comma  # exclusive
        while len(segments) < 5:
            start = end
            while start - 1 >= lo and end - start < _MAX_PHRASE:
                prev = toks[start - 1]
                if prev.text == "," or prev.kind == "quote" or (prev.kind == "punct" and prev.text in _HARD_PUNCT):
                    break
                start -= 1
            if start >= end:
                break
            segments.append((start, end))
            if start - 1 >= lo and toks[start - 1].text == ",":
                end = start - 1
                continue
            break
        host: _Np | None = None
        host_idx = -1
        for idx, (s, e) in enumerate(segments):
            kind, np = self._segment_kind(s, e)
            if kind == "app":
                continue
            if kind == "other":
                break
            host, host_idx = np, idx
            if kind == "np-terminal":
                break
        if host is None or (strict and not self._speaker_like(host)):
            return False
        appositives = segments[:host_idx]
        if not appositives and not loose:
            return False
        desc_parts = []
        for s, e in reversed(appositives):
            first = toks[s]
            if first.kind == "word" and (first.low in _RELATIVES or first.low == "whose" or first.text[:1].isdigit()):
                continue
            desc_parts.append(p.span(s, e))
        self._add_np(host, cue, extra_desc=", ".join(desc_parts) or None)
        return True

    def _segment_kind(self, s: int, e: int) -> tuple[str, _Np | None]:
        toks = self.p.toks
        first = toks[s]
        k = s + 1 if first.kind == "word" and first.low.endswith("ly") and s + 1 < e else s  # "wholly owned by"
        if first.kind == "word" and (
            first.low in _RELATIVES or first.low in ("whose", "of", "for", "at", "in", "from", "however", "too",
                                                     "meanwhile", "with")
            or first.text.isdigit()
            or (toks[k].text[:1].islower() and k + 1 < e and toks[k + 1].low == "by")
            or (first.text[:1].islower() and first.low.endswith(("ing", "ed")) and first.low not in _DETERMINERS)
        ):
            return "app", None  # "who ...", "of the University", "19", "headed by", "speaking at", "dated April 2"
        # "a retired vice chairman of X and currently a board member": starts like an appositive, too long to parse
        looks_appositive = s != self.p.sent_lo(s) and toks[k].kind == "word" and (
            toks[k].text[:1].islower() and (
                toks[k].low in ("a", "an", "the") or toks[k].low in _ROLE_NOUNS or toks[k].low in _PERSON_NOUNS
                or toks[k].low in _TITLES or toks[k].low in _ROLE_MODIFIERS
            )
            # "Special Assistant on Food ... to the Prime Minister"
            or any(t.kind == "word" and t.low in _TITLES and t.low not in ("general", "major")
                   for t in toks[k : min(e, k + 3)])
        )
        nps = self.p.left_np(e - 1, s)
        if not nps or (nps[0].start != s and nps[0].stop != "boundary"):
            return ("app", None) if looks_appositive else ("other", None)
        if len(nps) > 1:  # "chief financial officer and treasurer at ...": one phrase for an appositive
            nps = [_Np(nps[0].start, nps[-1].end, nps[0].stop)]
        np = nps[0]
        words = self.p.words(np)
        if any(_is_number(w) for w in words) or _is_pronoun(words[0]):
            return "other", None
        if np.start == s:
            return ("np-terminal" if s == self.p.sent_lo(s) else "np"), np
        if np.stop == "boundary":
            return "np-terminal", np
        return "other", None

    def _inverted(self, v: int, cue: str, after_quote: bool) -> None:
        p = self.p
        toks = p.toks
        if v + 1 >= len(toks):
            return
        np = p.right_np(v + 1, p.sent_hi(v))
        if np is None:
            return
        words = p.words(np)
        if _is_pronoun(words[0]):
            return
        after = toks[np.end] if np.end < len(toks) else None
        follows_punct = after is None or (after.kind in ("punct", "quote") and after.text in ".,;:!?\"”") or (
            after.kind == "word" and after.low in ("in", "at", "on", "to", "from", "during", "after", "when", "who")
            and self._speaker_like(np))
        if not after_quote and not follows_punct:
            return
        if not after_quote and not (_is_cap(words[0]) or words[0].low in _DETERMINERS or self._speaker_like(np)):
            return
        extra = None
        if after is not None and after.text == "," and np.end + 1 < len(toks):
            first = toks[np.end + 1]
            if first.kind == "word" and first.low not in _RELATIVES and first.low != "whose" and not _is_stop(first):
                app = p.right_np(np.end + 1, p.sent_hi(v))
                if app is not None and (first.low in _DETERMINERS or not _is_cap(first) or _tok_is_title(first)):
                    extra = p.span(app.start, app.end)
        self._add_np(np, cue, extra_desc=extra)

    def _prepositional(self, cue_start: int, i: int, cue: str) -> None:
        p = self.p
        toks = p.toks
        if i >= len(toks):
            return
        hi = p.sent_hi(i)
        first = p.right_np(i, hi)
        if first is None:
            return
        nps = [first]
        j = first.end
        pending: list[_Np] = []
        while j < hi:
            t = toks[j]
            if t.text == "," and j + 1 < hi:
                nxt = p.right_np(j + 1, hi)
                if nxt is None:
                    break
                if toks[j + 1].low == "and" and j + 2 < hi:
                    nxt = p.right_np(j + 2, hi)
                    if nxt is None:
                        break
                    pending.append(nxt)
                    j = nxt.end
                    if j >= hi or not _is_word(toks[j]):
                        nps.extend(pending)
                    break
                pending.append(nxt)
                j = nxt.end
                continue
            if t.kind == "word" and t.low == "and" and j + 1 < hi:
                nxt = p.right_np(j + 1, hi)
                if nxt is None:
                    break
                pending.append(nxt)
                j = nxt.end
                if j >= hi or not _is_word(toks[j]) and toks[j].text != "(":
                    nps.extend(pending)
                break
            break
        for np in nps:
            if len(nps) > 1 and (p.words(np)[0].low in _PRONOUNS):
                continue
            self._add_np(np, cue)

    def _quoted(self, v: int) -> None:
        """ "Tehran radio quoted a Foreign Ministry spokesman as saying": credit both."""
        p = self.p
        toks = p.toks
        hi = p.sent_hi(v)
        if v + 1 >= len(toks):
            return
        nxt = toks[v + 1]
        if nxt.low in ("as", "by"):
            # "X was quoted as saying", "X was quoted by the China Daily as saying": X is the speaker, the
            # newspaper credited too
            if not self._passive_subject(v, "quoted as saying"):
                return
            if nxt.low == "by":
                agent = p.right_np(v + 2, hi)
                if agent is not None and agent.end < len(toks) and toks[agent.end].low == "as":
                    self._add_np(agent, "quoted")
            return
        if nxt.low in ("him", "her", "them") and v + 3 < len(toks) and toks[v + 2].low == "as":
            # "IRNA quoted him as saying": the news agency, and whoever "him" is
            self._subject(v, "quoted")
            self.mentions.append(_Mention(v + 1, "quoted as saying", pronoun={"him": "he", "her": "she"}.get(
                nxt.low, "they"), sentence=p.sent_of[v]))
            return
        np = p.right_np(v + 1, hi)
        if np is None or np.end + 1 >= len(toks) or toks[np.end].low != "as":
            return
        if toks[np.end + 1].low not in ("saying", "telling", "stating", "describing"):
            return
        self._subject(v, "quoted")
        self._add_np(np, "quoted as saying")

    def _passive_subject(self, v: int, cue: str) -> bool:
        """The subject of "X was quoted" / "X were quoted": left of the auxiliary."""
        p = self.p
        toks = p.toks
        lo = p.sent_lo(v)
        i = v - 1
        while i >= lo and toks[i].kind == "word" and toks[i].low in _SKIP_BEFORE_VERB:
            i -= 1
        if i < lo or toks[i].low not in ("was", "were", "is", "are", "been", "being", "be"):
            return False
        j = i - 1
        while j >= lo and toks[j].kind == "word" and toks[j].low in _SKIP_BEFORE_VERB:
            j -= 1
        if j < lo:
            return False
        if _is_pronoun(toks[j]):
            self.mentions.append(_Mention(j, cue, pronoun=toks[j].low, sentence=p.sent_of[j]))
            return True
        if toks[j].text == ",":
            return self._chain(j, v, cue, loose=True, strict=True)
        nps = [np for np in p.left_np(j, lo) if self._speaker_like(np)]
        for np in nps:
            self._add_np(np, cue)
        return bool(nps)

    def _clause_subject(self, v: int, cue: str, strict: bool) -> None:
        p = self.p
        s = p.sent_of[v]
        np = p.sentence_subject(s)
        if np is None or np.end >= v:
            return
        if _is_pronoun(p.toks[np.start]):
            t = p.toks[np.start]
            if t.low not in ("him", "them", "us", "me", "you", "we"):
                self.mentions.append(_Mention(np.start, cue, pronoun=t.low, sentence=s))
            return
        if self._speaker_like(np) and (not strict or not p.words(np)[-1].low.endswith(("'s", "’s"))):
            self._add_np(np, cue)

    def _saying(self, i: int) -> None:
        """ "Ruritania condemned the strikes, saying ...": the subject of the sentence."""
        p = self.p
        s = p.sent_of[i]
        np = p.sentence_subject(s)
        if np is None or np.start >= i:
            return
        if not _is_pronoun(p.toks[np.start]) and not self._speaker_like(np):
            return
        if _is_pronoun(p.toks[np.start]):
            t = p.toks[np.start]
            self.mentions.append(_Mention(np.start, "saying", pronoun=t.low, sentence=s))
            return
        self._add_np(np, "saying")

    def _with_participle(self, i: int) -> None:
        """ "with one poster writing ...", "with the i reporting ...": a speaker introduced by "with"."""
        p = self.p
        toks = p.toks
        lo = p.sent_lo(i)
        k = i - 1
        while k >= lo and k > i - 6 and toks[k].low != "with":
            if not _is_word(toks[k]) or _is_stop(toks[k]) or toks[k].low in _NP_PREPS or toks[k].low.endswith("ing"):
                return  # "with laws banning migrants from claiming asylum" is not a speaker
            k -= 1
        if k < lo or toks[k].low != "with" or k == i - 1:
            return
        np = p.right_np(k + 1, i + 1)
        if np is None or np.end != i:
            # right_np stops at lowercase words after capitals; accept a short phrase
            np = _Np(k + 1, i)
        self._add_np(np, toks[i].low)

    def _opening_participle(self, i: int) -> None:
        """ "Writing in a blog post, Matthew Ingram ...": the subject after the opening phrase."""
        p = self.p
        toks = p.toks
        hi = p.sent_hi(i)
        k = i + 1
        while k < hi and toks[k].text != ",":
            k += 1
        if k + 1 >= hi:
            return
        np = p.right_np(k + 1, hi)
        if np is None or not _is_cap(toks[np.start]) and toks[np.start].low not in _DETERMINERS:
            return
        self._add_np(np, toks[i].low)

    # -- emitting -----------------------------------------------------------------------------------------------

    def _add_np(self, np: _Np, cue: str, extra_desc: str | None = None) -> None:
        p = self.p
        words = p.words(np)
        if not words:
            return
        if len(words) == 1 and _is_pronoun(words[0]):
            self.mentions.append(_Mention(np.start, cue, pronoun=words[0].low, sentence=p.sent_of[np.start]))
            return
        if words[0].text == "I" or (len(words) == 1 and words[0].low in _DETERMINERS):
            return
        # a bare definite description: "the company", "the trade source", "The newspaper"
        if words[0].low == "the" and len(words) >= 2 and not any(_is_cap(w) for w in words[1:]) and all(
            w.kind == "word" for w in words
        ) and not any(w.low in _NP_PREPS for w in words[1:]):
            name, desc, feats = _split_phrase(p, np)
            m = _Mention(np.start, cue, name=name, description=extra_desc or desc,
                         anaphor=[w.low for w in words[1:]], sentence=p.sent_of[np.start], **feats)
            self.mentions.append(m)
            return
        name, desc, feats = _split_phrase(p, np)
        if extra_desc:
            desc = _clean(f"{desc}, {extra_desc}" if desc else extra_desc)
            if any(w in _PERSON_NOUNS or w in _TITLES for w in extra_desc.lower().split()[:6]):
                feats["person"] = True
        self._emit(np.start, name, desc, cue, feats)

    def _emit(self, pos: int, name: str, desc: str | None, cue: str, feats: dict) -> None:
        name = _clean(name)
        if not name or not any(c.isalpha() for c in name):
            return
        self.mentions.append(_Mention(pos, cue, name=name, description=desc, sentence=self.p.sent_of[pos], **feats))


# ----------------------------------------------------------------------------------------------------------------
# Resolution and de-duplication


def _norm_name(name: str) -> str:
    name = re.sub(r"\s+", " ", name).strip().casefold()
    return re.sub(r"^the ", "", name)


def _edit_distance_at_most_one(a: str, b: str) -> bool:
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


def _same_person(short: str, known: Speaker) -> bool:
    """ "Verdi" after "Paolo Verdi"; tolerates a one-letter misspelling of a long surname ("Hofman"/"Hoffman")."""
    s = _norm_name(short)
    parts = _norm_name(known.name).split()
    if " " in s or len(parts) < 2:
        return False
    last = parts[-1]
    return s == last or (len(s) >= 5 and len(last) >= 5 and _edit_distance_at_most_one(s, last))


def _compatible(pronoun: str, k: _Known) -> bool:
    if pronoun in ("he", "she"):
        return not k.org and not k.plural
    if pronoun == "it":
        return not k.person and not k.plural
    if pronoun == "they":
        return k.plural or k.org
    return False


def _known_from(speaker: Speaker) -> _Known:
    """Features of a speaker handed in from an earlier passage (only its words are known)."""
    name_words = speaker.name.split()
    desc = (speaker.description or "").lower().split()
    low = [w.lower().strip(".,") for w in name_words]
    org = any(w in _ORG_WORDS for w in low) or speaker.name.lower().startswith("the ") and any(
        w[:1].isupper() for w in name_words[1:])
    person = any(w in _PERSON_NOUNS or w in _TITLES for w in desc) or (low and low[-1] in _PERSON_NOUNS)
    plural = bool(low) and name_words[-1][:1].islower() and low[-1].endswith("s") and not low[-1].endswith("ss") and (
        low[-1] not in _PERSON_NOUNS)
    return _Known(speaker, plural=plural, org=org and not person, person=bool(person))


class _Resolver:
    def __init__(self, p: _Passage, history: Sequence[_Known]) -> None:
        self.p = p
        self.history = list(history)
        self.found: list[_Known] = []

    def resolve(self, mentions: Iterable[_Mention]) -> list[_Known]:
        for m in sorted(mentions, key=lambda m: m.pos):
            if m.pronoun:
                k = self._antecedent(m)
                if k is not None:
                    self._add(replace(k.speaker, cue=m.cue), k, m.pos)
                continue
            if m.anaphor is not None:
                k = self._definite(m)
                if k is not None:
                    self._add(replace(k.speaker, cue=m.cue), k, m.pos)
                    continue
            known = _Known(Speaker(m.name, m.description, m.cue), plural=m.plural, org=m.org and not m.person,
                           person=m.person, pos=m.pos)
            self._add(known.speaker, known, m.pos)
        return self.found

    def _add(self, speaker: Speaker, k: _Known, pos: int) -> None:
        key = _norm_name(speaker.name)
        for i, f in enumerate(self.found):
            if _norm_name(f.speaker.name) == key or _same_person(speaker.name, f.speaker):
                if f.speaker.description is None and speaker.description and _norm_name(f.speaker.name) == key:
                    self.found[i] = replace(f, speaker=replace(f.speaker, description=speaker.description))
                self.found[i].pos = pos
                return
            if _same_person(f.speaker.name, speaker):  # "Verdi", then "Paolo Verdi": keep the fuller name
                self.found[i] = _Known(replace(speaker, cue=f.speaker.cue), k.plural, k.org, k.person, pos)
                return
        speaker = self._expand(speaker, pos)
        self.found.append(_Known(speaker, k.plural, k.org, k.person, pos))

    def _expand(self, speaker: Speaker, pos: int) -> Speaker:
        """A bare surname ("Verdi said") gets the full name given earlier in the passage ("Paolo Verdi")."""
        name = speaker.name
        if " " in name or not name[:1].isupper() or name.lower() in _ORG_WORDS:
            return speaker
        toks = self.p.toks
        limit = toks[pos].start if pos < len(toks) else len(self.p.text)
        for m in re.finditer(rf"((?:[A-Z][\w'’-]*|[A-Z]\.)\s+)?([A-Z][\w'’-]*\s+){re.escape(name)}\b",
                             self.p.text[:limit]):
            first = m.group(2).strip()
            initial = (m.group(1) or "").strip()
            if first.lower().rstrip(".") in _TITLES or first.lower() in _STOP or first.lower() in _ORG_WORDS:
                continue
            if first.endswith(("'s", "’s")) or first.lower() in _DETERMINERS:
                continue
            full = f"{first} {name}"
            if re.fullmatch(r"[A-Z]\.", first) and initial and initial.lower() not in _STOP:
                full = f"{initial} {full}"
            return replace(speaker, name=full)
        return speaker

    def _antecedent(self, m: _Mention) -> _Known | None:
        p = self.p
        # 1. a speaker already found in this passage
        for k in sorted(self.found, key=lambda k: -k.pos):
            if k.pos < m.pos and _compatible(m.pronoun or "", k) and (not m.embedded or p.sent_of[k.pos] == m.sentence):
                return k
        # 2. the subject of this sentence, when the pronoun sits inside it ("Ruritania hit what it described as",
        #    "Smith declined to comment but he said")
        subj = p.sentence_subject(m.sentence)
        if (m.embedded or m.pronoun in ("he", "she")) and subj is not None and subj.end <= m.pos and not _is_pronoun(
            p.toks[subj.start]
        ):
            k = self._candidate(subj, m.pronoun or "")
            if k is not None:
                return k
        if m.embedded:
            return None
        # 3. a person named as the subject of an earlier sentence of this passage ("Maria Lopez won ... She said")
        for s in range(m.sentence - 1, max(-1, m.sentence - 4), -1):
            subj = p.sentence_subject(s)
            if subj is None or _is_pronoun(p.toks[subj.start]):
                continue
            k = self._candidate(subj, m.pronoun or "")
            if k is not None:
                return k
        # 4. speakers of earlier passages of the article
        for k in reversed(self.history):
            if _compatible(m.pronoun or "", k):
                return k
        return None

    def _candidate(self, np: _Np, pronoun: str) -> _Known | None:
        """A sentence subject as an antecedent: a capitalised name whose kind fits the pronoun."""
        p = self.p
        words = p.words(np)
        if not any(_is_cap(w) for w in words) or words[-1].kind == "word" and not _is_cap(words[-1]):
            return None
        # the phrase must be followed by something verb-like ("Ruritania sent", "Maria Lopez won", "Acme also"),
        # not by more noun phrase ("Successful completion")
        after = p.toks[np.end] if np.end < len(p.toks) else None
        if after is not None and after.kind == "word" and not (
            _is_stop(after) or after.low.endswith(("ed", "ly", "s")) or after.low in _NP_PREPS
        ):
            return None
        name, desc, feats = _split_phrase(p, np)
        k = _Known(Speaker(name, desc), plural=feats["plural"], org=feats["org"] and not feats["person"],
                   person=feats["person"], pos=np.start)
        if pronoun in ("he", "she"):
            n_words = len(name.split())
            return k if k.person or (not k.org and not k.plural and 2 <= n_words <= 3) else None
        if pronoun == "it":
            return k if _compatible("it", k) else None
        return k if _compatible(pronoun, k) else None

    def _definite(self, m: _Mention) -> _Known | None:
        words = [w for w in (m.anaphor or []) if w not in _DETERMINERS]
        generic = [w for w in words if not re.search(r"\w-(?:based|owned|controlled|run|listed)$", w)]
        if not words:
            return None
        head = words[-1]
        pool = [k for k in sorted(self.found, key=lambda k: -k.pos) if k.pos < m.pos] + list(reversed(self.history))
        for k in pool:
            # "the trade source" -> "a coffee trade source": same head noun, the other words given before too
            name_words = re.findall(r"[\w'-]+", k.speaker.name.lower())
            desc_words = re.findall(r"[\w'-]+", (k.speaker.description or "").lower())
            heads = {w[-1] for w in (name_words, desc_words) if w}
            if head in heads and all(w in set(name_words) | set(desc_words) for w in words):
                return k
        if len(generic) == 1 and head in _COMPANY_ANAPHORS:
            for k in pool:
                if not k.person and not k.plural and (k.org or k.speaker.name[:1].isupper()):
                    return k
        return None


# ----------------------------------------------------------------------------------------------------------------
# Public API


def _extract(text: str, history: Sequence[_Known]) -> list[_Known]:
    if not text or not text.strip():
        return []
    p = _Passage(text)
    mentions = _Finder(p).run()
    return _Resolver(p, history).resolve(mentions)


def extract_speakers(text: str, previous_speaker: Speaker | None = None) -> list[Speaker]:
    """Who is quoted or credited in this passage, in order of appearance, de-duplicated.

    `previous_speaker` is the speaker named just before this passage in the same article (the caller knows it);
    "he said" / "it said" / "the company said" fall back to it when the passage itself names nobody fitting.
    """
    history = [_known_from(previous_speaker)] if previous_speaker is not None else []
    return [k.speaker for k in _extract(text, history)]


def attribute_chunks(chunks: Sequence[Chunk]) -> list[Chunk]:
    """Copies of one article's passages (in order) with `speakers` filled.

    Speakers found in earlier passages are carried forward so a "he said" in passage 5 resolves to the person
    named in passage 4.
    """
    history: list[_Known] = []
    out = []
    for chunk in chunks:
        found = _extract(chunk.text, history)
        out.append(replace(chunk, speakers=tuple(k.speaker for k in found)))
        for k in sorted(found, key=lambda k: k.pos):
            history = [h for h in history if _norm_name(h.speaker.name) != _norm_name(k.speaker.name)]
            history.append(_Known(k.speaker, k.plural, k.org, k.person))
        history = history[-8:]
    return out


def _score_key(name: str) -> str:
    return _norm_name(name)


def score_speaker_names(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Precision/recall/F1 of speaker names over passages (micro-averaged), for `briefbot eval --attribution`.

    `gold[i]` and `predicted[i]` are the speaker names of passage i. Names are compared case-insensitively after
    collapsing whitespace and dropping a leading "the" ("The US State Department" == "the US state department").
    Within a passage each gold name can be matched once (multiset intersection). Over all passages:
    precision = matched / predicted names, recall = matched / gold names, f1 their harmonic mean. When there is
    nothing to divide by (no predictions, or no gold names) the ratio is 1.0 — nothing claimed, nothing wrong.
    `exact` counts passages whose predicted name set equals the gold set (including both empty).
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} passages, predicted has {len(predicted)}")
    tp = n_gold = n_pred = exact = 0
    for g, pr in zip(gold, predicted):
        gc = Counter(_score_key(n) for n in g)
        pc = Counter(_score_key(n) for n in pr)
        tp += sum((gc & pc).values())
        n_gold += sum(gc.values())
        n_pred += sum(pc.values())
        exact += int(gc == pc)
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_gold if n_gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision, "recall": recall, "f1": f1, "true_positives": tp, "gold": n_gold,
        "predicted": n_pred, "passages": len(gold), "exact": exact,
    }


# ----------------------------------------------------------------------------------------------------------------
# Evaluation on the development set


def _collapse(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def _load_articles(data_dir: Path, wanted: set[str]) -> dict[str, str]:
    texts: dict[str, str] = {}
    seed = data_dir / "seed"
    if "seed" in wanted and seed.is_dir():
        for path in sorted(seed.glob("*.txt")):
            texts["seed"] = path.read_text(encoding="utf-8")
            break
    for rel in ("gum-news/articles.jsonl", "reuters-dev/articles.jsonl"):
        path = data_dir / rel
        if not path.exists():
            continue
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                item = json.loads(line)
                if item.get("id") in wanted:
                    texts[item["id"]] = item.get("text") or ""
    return texts


def _context_chunks(article: str, passage: str) -> list[Chunk]:
    """The text before `passage` in its article, one sentence a chunk, as the real pipeline would have seen it."""
    flat = _collapse(article)
    at = flat.find(_collapse(passage))
    if at <= 0:
        return []
    before = flat[:at]
    parts = re.split(r"(?<=[.!?\"”])\s+(?=[\"“A-Z<])", before)
    chunks, pos = [], 0
    for i, part in enumerate(parts):
        if part.strip():
            chunks.append(Chunk(position=i, text=part, start=pos, end=pos + len(part)))
        pos += len(part) + 1
    return chunks


def evaluate_dev_set(data_dir: Path, *, with_context: bool = True) -> dict:
    """Score the rules on `dev-attribution.jsonl`; each passage gets the speakers of the article text before it.

    Returns score_speaker_names' dict plus "items": per passage id, gold and predicted names.
    """
    items = [json.loads(line) for line in (data_dir / "dev-attribution.jsonl").open(encoding="utf-8") if line.strip()]
    articles = _load_articles(data_dir, {it["article_id"] for it in items}) if with_context else {}
    gold, pred, rows = [], [], []
    for it in items:
        context = _context_chunks(articles.get(it["article_id"], ""), it["text"]) if with_context else []
        passage = Chunk(position=len(context), text=it["text"], start=0, end=len(it["text"]))
        speakers = attribute_chunks([*context, passage])[-1].speakers
        names = [s.name for s in speakers]
        gold.append([s["name"] for s in it["speakers"]])
        pred.append(names)
        rows.append({"id": it["id"], "gold": gold[-1], "predicted": names,
                     "speakers": [s.as_dict() for s in speakers]})
    result = score_speaker_names(gold, pred)
    result["items"] = rows
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m index.attribution [DATA_DIR] [-v]`: the dev-set scores (and, with -v, every miss)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("data_dir", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--no-context", action="store_true", help="score passages without the article before them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = evaluate_dev_set(Path(args.data_dir), with_context=not args.no_context)
    if args.verbose:
        for row in result["items"]:
            g = Counter(_score_key(n) for n in row["gold"])
            pr = Counter(_score_key(n) for n in row["predicted"])
            if g != pr:
                log.info("%s gold=%s predicted=%s", row["id"], row["gold"], row["predicted"])
    log.info(
        "precision %.3f  recall %.3f  f1 %.3f  (%d matched, %d gold, %d predicted; %d/%d passages exact)",
        result["precision"], result["recall"], result["f1"], result["true_positives"], result["gold"],
        result["predicted"], result["exact"], result["passages"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
