"""Date and outlet phrases, rank fusion and wire-copy folding, without the model."""

from datetime import datetime, timezone

import numpy as np

from index.fusion import collapse_copies, reciprocal_rank_fusion
from index.lexical import LexicalIndex
from index.query import parse_query

NOW = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)


def test_outlet_phrase_narrows_to_known_outlets_only():
    intent = parse_query("oil prices from Reuters", ["Reuters", "Wikinews"], NOW)
    assert intent.sources == ["Reuters"] and intent.text == "oil prices"
    assert intent.accepts(NOW, "reuters") and not intent.accepts(NOW, "Wikinews")
    assert parse_query("oil prices from Mars", ["Reuters"], NOW).sources == []


def test_today_this_week_and_month_phrases():
    today = parse_query("what happened today", [], NOW)
    assert today.start == datetime(2026, 11, 30, tzinfo=timezone.utc) and today.text == "what happened"
    assert not today.accepts(datetime(2026, 11, 29, 23, tzinfo=timezone.utc), None)
    week = parse_query("strikes this week", [], NOW)
    assert week.accepts(datetime(2026, 11, 25, tzinfo=timezone.utc), None)
    assert not week.accepts(datetime(2026, 11, 1, tzinfo=timezone.utc), None)
    march = parse_query("cocoa prices in March", [], NOW)
    assert march.months == {3} and march.text == "cocoa prices"
    assert march.accepts(datetime(1987, 3, 4, tzinfo=timezone.utc), None)
    assert not march.accepts(datetime(1987, 4, 4, tzinfo=timezone.utc), None)
    dated = parse_query("cocoa in March 1987", [], NOW)
    assert dated.start == datetime(1987, 3, 1, tzinfo=timezone.utc) and dated.end == datetime(1987, 4, 1, tzinfo=timezone.utc)


def test_latest_prefers_recent_without_filtering():
    intent = parse_query("latest on the port strike", [], NOW)
    assert intent.prefer_recent and not intent.has_filters and intent.text == "the port strike"


def test_reciprocal_rank_fusion_rewards_agreement():
    fused = reciprocal_rank_fusion([[(1, 9.0), (2, 5.0), (3, 1.0)], [(4, 0.9), (2, 0.8), (5, 0.7)]])
    assert fused[0][0] == 2, "second in both beats first in one"
    assert {i for i, _ in fused} == {1, 2, 3, 4, 5}


def test_wire_copies_fold_into_the_first_but_an_article_never_folds_into_itself():
    v = np.eye(3, dtype=np.float32)
    texts = {1: "Oil rose 2 pct.", 2: "OIL ROSE 2 PCT", 3: "Oil rose 2 pct.", 4: "Gold fell."}
    vectors = {1: v[0], 2: v[1], 3: v[0], 4: v[2]}
    articles = {1: 10, 2: 20, 3: 10, 4: 30}
    groups = collapse_copies([1, 2, 3, 4], vectors, texts, articles)
    assert groups == [(1, [2]), (3, []), (4, [])]


def test_lexical_matches_numbers_and_tickers_exactly():
    index = LexicalIndex.build([1, 2, 3], ["Sales rose to 1,750 dlrs a tonne.", "Sales rose to 1,850 dlrs.",
                                           "International Business Machines (IBM) said profits rose."])
    assert index.search("1,750", 3)[0][0] == 1
    assert index.search("IBM profits", 3)[0][0] == 3
    assert index.known_terms("silicon valley bank")[1] == ["silicon", "valley", "bank"]


def test_a_pasted_passage_is_searched_as_it_stands_not_filtered_by_its_dates_or_outlets():
    passage = ("The trigger for the flare-up was a devastating bombing on Jan 3 that killed nearly 100 people at a "
               "ceremony in Iran's southeastern Kerman city to commemorate commander Qassem Soleimani, who was "
               "killed by a US drone in 2020, according to Reuters.")
    intent = parse_query(passage, ["Reuters"], NOW)
    assert not intent.has_filters and intent.text == passage
