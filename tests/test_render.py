"""Telegram HTML: escaped, within the limits, split between passages and never inside one."""

from datetime import datetime, timezone

from bot.service import Answer, Headline, Reply, Result
from handlers.render import MESSAGE_LIMIT, article_parts, reply_messages, safe_url, visible_length
from index.types import Speaker


def result(rank: int, text: str, url: str | None = "https://example.org/a", title: str = "Headline",
           highlight: tuple[int, int] = (0, 0)) -> Result:
    start, end = highlight
    return Result(
        rank=rank, score=0.9, passage_id=rank, text=text, highlight=text[start:end], highlight_start=start,
        highlight_end=end,
        article_id=1, position=rank, title=title, source="Test Wire", author=None, dateline=None,
        published=datetime(2026, 11, 20, tzinfo=timezone.utc), url=url,
        speakers=[Speaker("Jane <Doe>", "a spokeswoman & analyst", "said")],
    )


def test_everything_from_articles_is_escaped():
    text = "<b>bold</b> & </blockquote> text. Second sentence."
    (message,) = reply_messages(Reply("answer", "", Answer("q", True, [result(1, text, highlight=(0, 33))]), topic_id=3))
    assert "<b>&lt;b&gt;bold&lt;/b&gt; &amp; &lt;/blockquote&gt; text.</b> Second sentence." in message.html
    assert "Jane &lt;Doe&gt;, a spokeswoman &amp; analyst" in message.html
    assert message.html.count("<blockquote>") == message.html.count("</blockquote>") == 1
    assert '<a href="https://example.org/a">Headline</a>' in message.html
    assert "20 Nov 2026" in message.html


def test_only_http_links_become_hrefs():
    assert safe_url("javascript:alert(1)") is None
    assert safe_url("https://example.org/x?a=1") == "https://example.org/x?a=1"
    (message,) = reply_messages(Reply("answer", "", Answer("q", True, [result(1, "text " * 5, url="javascript:x")])))
    assert "javascript" not in message.html and "<a " not in message.html


def test_long_answers_split_between_passages_under_the_limit():
    passages = [result(i, f"Passage {i} " + "word " * 300) for i in range(1, 9)]
    messages = reply_messages(Reply("answer", "", Answer("q", True, passages), topic_id=1))
    assert len(messages) > 1
    for message in messages:
        assert visible_length(message.html) <= MESSAGE_LIMIT
        assert message.html.count("<blockquote>") == message.html.count("</blockquote>")
    joined = "".join(m.html for m in messages)
    assert all(f"Passage {i} " in joined for i in range(1, 9))
    assert messages[-1].buttons is not None and all(m.buttons is None for m in messages[:-1])


def test_buttons_fit_telegram_limits():
    (message,) = reply_messages(Reply("answer", "", Answer("q", True, [result(1, "Short text here.", url=None)]),
                                      topic_id=123456789))
    buttons = message.buttons.inline_keyboard[0]
    assert [b.text for b in buttons] == ["More", "Full article"]
    assert all(len(b.callback_data.encode()) <= 64 for b in buttons)


def test_declined_reply_lists_headlines():
    headline = Headline(1, "Rain & floods", "Wire", None, None)
    (message,) = reply_messages(Reply("declined", "I have nothing on that.", Answer("q", False, headlines=[headline])))
    assert "Rain &amp; floods" in message.html and message.buttons is None


def test_article_without_link_comes_in_parts():
    text = "\n\n".join("Paragraph %d. " % i + "word " * 150 for i in range(20))
    parts = article_parts("Title <x>", text)
    assert len(parts) > 1 and parts[0].startswith("<b>Title &lt;x&gt;</b>")
    assert all(visible_length(p) <= MESSAGE_LIMIT for p in parts)


def test_a_huge_unbroken_block_is_still_cut_under_the_limit():
    parts = article_parts("T", "x" * 20000 + " &&& " + "y" * 9000)
    assert all(visible_length(p) <= MESSAGE_LIMIT for p in parts)
    assert "".join(parts).count("x") == 20000
