"""How a chat message is read in the light of the conversation (no model needed)."""

from datetime import datetime, timedelta, timezone

import pytest

from bot.conversation import ConversationState, Intent, classify, contextual_query


@pytest.mark.parametrize(
    "message, intent",
    [
        ("more", Intent.MORE), ("Go on", Intent.MORE), ("tell me more please", Intent.MORE),
        ("who said that?", Intent.WHO), ("Source?", Intent.WHO), ("where is that from?", Intent.WHO),
        ("what happened next?", Intent.NEXT), ("and then?", Intent.NEXT),
        ("and before that?", Intent.BEFORE), ("What happened before?", Intent.BEFORE),
        ("why?", Intent.FOLLOW_UP), ("and Pakistan?", Intent.FOLLOW_UP),
        ("what did they say about it?", Intent.FOLLOW_UP),
        ("how many people died in the Kerman bombing in January", Intent.QUESTION),
    ],
)
def test_follow_ups_are_recognised_in_a_conversation(message, intent):
    assert classify(message, has_context=True) is intent


def test_without_context_everything_is_a_new_question():
    assert classify("more", has_context=False) is Intent.QUESTION
    assert classify("who said that?", has_context=False) is Intent.QUESTION


def test_follow_up_is_searched_with_the_question_it_follows():
    assert contextual_query("why did Iran strike Pakistan", "and Pakistan?") == "why did Iran strike Pakistan Pakistan"
    assert contextual_query("", "why?") == "why"


def test_state_round_trips_and_expires():
    now = datetime.now(timezone.utc)
    state = ConversationState(query="q", topic_id=4, last_shown=[2], focus_article=7, focus_position=3,
                              updated_at=now.isoformat())
    restored = ConversationState.from_dict(state.to_dict(), timedelta(minutes=60), now=now + timedelta(minutes=5))
    assert restored == state
    expired = ConversationState.from_dict(state.to_dict(), timedelta(minutes=60), now=now + timedelta(hours=2))
    assert not expired.has_context


def test_damaged_state_starts_afresh():
    assert not ConversationState.from_dict({"updated_at": "not a date"}, timedelta(minutes=5)).has_context
