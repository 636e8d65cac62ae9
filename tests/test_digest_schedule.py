"""The digest schedule with a controlled clock: local wall-clock slots, DST, exactly one per local day."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from bot.subscriptions import BadSetting, FakeClock, first_slot, parse_time, resolve_timezone, slot_at

BERLIN = "Europe/Berlin"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_times_are_checked_with_friendly_messages():
    assert parse_time("7:30") == parse_time("07:30") == parse_time("0730") == parse_time("7.30") == "07:30"
    assert parse_time("7") == "07:00"
    for bad in ("25:99", "24:00", "12:60", "noon", "", "7:3"):
        with pytest.raises(BadSetting) as error:
            parse_time(bad)
        assert "Traceback" not in str(error.value) and "/time" in str(error.value)


def test_time_zones_are_validated_with_suggestions():
    assert resolve_timezone("Europe/Berlin") == resolve_timezone("europe/berlin") == resolve_timezone("Berlin") == BERLIN
    assert resolve_timezone("new york") == "America/New_York"
    assert resolve_timezone("gmt") == "UTC"
    with pytest.raises(BadSetting) as typo:
        resolve_timezone("Europe/Berlinn")
    assert "Europe/Berlin" in typo.value.suggestions
    with pytest.raises(BadSetting) as nowhere:
        resolve_timezone("Mars/Olympus")
    assert "Mars/Olympus" in str(nowhere.value) and nowhere.value.suggestions  # common zones offered instead


def test_slots_follow_the_wall_clock_across_both_dst_changes():
    # Berlin: CET (UTC+1) until the last Sunday of March, CEST (UTC+2) until the last Sunday of October
    assert slot_at(date(2024, 3, 30), "07:30", BERLIN) == utc(2024, 3, 30, 6, 30)
    assert slot_at(date(2024, 3, 31), "07:30", BERLIN) == utc(2024, 3, 31, 5, 30)
    assert slot_at(date(2024, 10, 26), "07:30", BERLIN) == utc(2024, 10, 26, 5, 30)
    assert slot_at(date(2024, 10, 27), "07:30", BERLIN) == utc(2024, 10, 27, 6, 30)
    # 02:30 does not exist on 31 March (it runs an hour later) and happens twice on 27 October (the first)
    assert slot_at(date(2024, 3, 31), "02:30", BERLIN) == utc(2024, 3, 31, 1, 30)
    assert slot_at(date(2024, 10, 27), "02:30", BERLIN) == utc(2024, 10, 27, 0, 30)
    assert first_slot("07:30", BERLIN, utc(2024, 3, 31, 5, 31)) == (date(2024, 4, 1), utc(2024, 4, 1, 5, 30))


@pytest.fixture
def digests(make_app):
    app = make_app()
    app.digests.clock = FakeClock(utc(2024, 3, 30, 6, 0))  # Saturday 07:00 in Berlin
    return app.digests


def due(service, *when) -> int:
    service.clock.set(utc(*when))
    return service.prepare_due()


def test_subscribed_at_0730_berlin_a_digest_is_due_at_0730_local_each_day_across_dst(digests):
    digests.subscribe(42)
    digests.set_timezone(42, "Europe/Berlin")
    view = digests.set_time(42, "07:30")
    assert view.next_digest.isoformat() == "2024-03-30T07:30:00+01:00"
    assert due(digests, 2024, 3, 30, 6, 29) == 0
    assert due(digests, 2024, 3, 30, 6, 30) == 1
    for later in ((2024, 3, 30, 6, 31), (2024, 3, 30, 12, 0), (2024, 3, 30, 22, 59)):
        assert due(digests, *later) == 0, "never twice on the same local day"
    assert digests.view(42).next_digest.isoformat() == "2024-03-31T07:30:00+02:00"
    assert due(digests, 2024, 3, 31, 5, 29) == 0  # 07:29 summer time
    assert due(digests, 2024, 3, 31, 5, 30) == 1  # 07:30 summer time, an hour earlier in UTC
    assert due(digests, 2024, 3, 31, 6, 30) == 0, "07:30 winter time is 08:30 now: already sent"
    digests.clock.set(utc(2024, 10, 27, 0, 0))  # autumn: back to winter time
    digests.set_time(42, "07:30")
    assert due(digests, 2024, 10, 27, 5, 30) == 0
    assert due(digests, 2024, 10, 27, 6, 30) == 1
    dates = [d.local_date for d in digests.store.recent_deliveries(limit=10)]
    assert sorted(dates) == ["2024-03-30", "2024-03-31", "2024-10-27"]


def test_changing_the_time_after_todays_digest_waits_for_tomorrow(digests):
    digests.subscribe(7)
    digests.set_timezone(7, BERLIN)
    digests.set_time(7, "07:30")
    assert due(digests, 2024, 3, 30, 6, 30) == 1
    view = digests.set_time(7, "18:00")  # later the same day: today's digest was already sent
    assert view.next_digest.isoformat() == "2024-03-31T18:00:00+02:00"
    assert due(digests, 2024, 3, 30, 17, 0) == 0
    digests.set_timezone(7, "America/New_York")  # a zone where it is still the same date
    assert due(digests, 2024, 3, 30, 23, 0) == 0


def test_a_digest_missed_while_down_comes_at_start_up_the_same_local_day_only(digests):
    digests.subscribe(1)
    digests.set_timezone(1, BERLIN)
    digests.set_time(1, "07:30")
    assert due(digests, 2024, 3, 30, 10, 0) == 1, "down from 07:00 to 11:00 Berlin: sent on start-up"
    # then down from Saturday 11:00 until Monday 09:00: Sunday's is gone, Monday's 07:30 is still today
    assert due(digests, 2024, 4, 1, 7, 0) == 1
    dates = sorted(d.local_date for d in digests.store.recent_deliveries(limit=10))
    assert dates == ["2024-03-30", "2024-04-01"]
    # down over Monday night until Tuesday 06:00 Berlin: nothing yet, Tuesday's comes at 07:30
    assert due(digests, 2024, 4, 2, 4, 0) == 0
    assert due(digests, 2024, 4, 2, 5, 30) == 1


def test_subscribing_after_the_time_starts_tomorrow_and_unsubscribing_stops(digests):
    digests.clock.set(utc(2024, 3, 30, 12, 0))
    view = digests.subscribe(5, "oil prices, iran")
    assert view.topics == ["oil prices", "iran"]
    assert view.next_digest.isoformat() == "2024-03-31T08:00:00+00:00"  # default 08:00 UTC
    assert digests.unsubscribe(5) and not digests.unsubscribe(5)
    assert due(digests, 2024, 3, 31, 8, 0) == 0
    view = digests.subscribe(5)
    assert view.topics == ["oil prices", "iran"], "settings are kept"


def test_topics_are_bounded_with_friendly_messages(digests):
    with pytest.raises(BadSetting) as many:
        digests.subscribe(9, ", ".join(f"topic {i}" for i in range(500)))
    assert "at most 10" in str(many.value)
    with pytest.raises(BadSetting) as long:
        digests.add_topics(9, "x" * 200)
    assert "at most 80 characters" in str(long.value)
    digests.add_topics(9, "oil prices, coffee; iran")
    view, missing = digests.remove_topics(9, ["2", "gold"])
    assert view.topics == ["oil prices", "iran"] and missing == ["gold"]
