"""A Telegram Bot API test server and Telegram's HTML rules, for end-to-end tests of the bot."""

from tests.botapi.html_check import (
    FormattedText,
    HtmlParseError,
    TelegramTextError,
    check_html,
    entity_text,
    format_text,
    parse_html,
    utf16_len,
    visible_length,
)
from tests.botapi.server import (
    ApiError,
    BotApiServer,
    BotEvent,
    Fault,
    Injection,
    RequestRecord,
    Violation,
    botapi_server,
    running_server,
)

__all__ = [
    "ApiError",
    "BotApiServer",
    "BotEvent",
    "Fault",
    "FormattedText",
    "HtmlParseError",
    "Injection",
    "RequestRecord",
    "TelegramTextError",
    "Violation",
    "botapi_server",
    "check_html",
    "entity_text",
    "format_text",
    "parse_html",
    "running_server",
    "utf16_len",
    "visible_length",
]
