"""The daily-digest fan-out: each minute the JobQueue asks the database who is due, and due digests go out.

One run at a time per process (a run started while another is sending returns at once); several processes
(replicas on one database) share the work through claims in the database, see `DigestFanout.tick`. Database
and encoder work run in worker threads, so questions keep being answered during a fan-out; messages are paced
below Telegram's limits (BRIEFBOT_DIGEST_MESSAGES_PER_SECOND, leaving room for replies to questions; one
message a second within a chat) by a small pacer in front of PTB's rate limiter, with a few concurrent senders
so a slow round trip doesn't slow everyone. Every outcome is written to the delivery record (see
bot/subscriptions.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from telegram import Bot

from bot.app import Briefbot
from bot.subscriptions import Sendable
from handlers.delivery import failure_kind, send_digest_part
from handlers.digest_render import digest_messages
from handlers.render import OutgoingMessage

log = logging.getLogger(__name__)


class DeliveryCancelled(Exception):
    """The delivery is no longer ours to send (unsubscribed, paused, or handled elsewhere)."""


class DigestFanout:
    """Lives in the application's bot_data; holds only pacing state and a cache of rendered digests."""

    def __init__(self, briefbot: Briefbot):
        self.briefbot = briefbot
        self.running = False
        self._next_slot = 0.0
        self._rendered: dict[tuple[int, str], list[OutgoingMessage]] = {}

    @property
    def service(self):
        return self.briefbot.digests

    async def tick(self, bot: Bot, keep_going=lambda: True) -> int:
        """Prepare and send everything due now; returns how many messages were sent.

        Replicas on one database share this work row by row: subscribers to compose for and deliveries to send
        are claimed in the database (storage.Claim), a heartbeat renews this process's claims while it runs,
        and whatever it has not started is handed back when it stops.
        """
        if self.running:
            return 0
        self.running = True
        sent = 0
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            counts = await asyncio.to_thread(self.service.recover_interrupted)
            if counts["uncertain"]:
                log.warning("%d digest(s) were in flight when their process stopped", counts["uncertain"])
            while keep_going():
                try:
                    await asyncio.to_thread(self.service.prepare_due)
                except Exception:  # noqa: BLE001 - what is already planned still goes out; the next run retries
                    log.exception("digest fan-out: preparing the due digests failed")
                claimed, delivered = await self._send_all(bot, keep_going)
                sent += delivered
                if not claimed:
                    break
        finally:
            heartbeat.cancel()
            try:
                await asyncio.to_thread(self.service.release_claims)
            except Exception:  # noqa: BLE001 - the leases run out by themselves
                log.exception("digest fan-out: could not hand back claims")
            self.running = False
        return sent

    async def _heartbeat(self) -> None:
        """Renew this process's claims a few times per lease, so other replicas know it is alive."""
        interval = max(0.2, self.briefbot.settings.digest_lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.service.renew_claims)
            except Exception:  # noqa: BLE001 - a database hiccup; the next beat tries again
                log.exception("digest fan-out: renewing claims failed")

    async def _send_all(self, bot: Bot, keep_going) -> tuple[int, int]:
        """A few concurrent senders, each claiming its next delivery from the database until none is left.
        Returns (deliveries claimed, messages sent)."""
        counts = [0, 0]

        async def worker() -> None:
            while keep_going():
                batch = await asyncio.to_thread(self.service.claim_sendable)
                if not batch:
                    return
                for item in batch:
                    counts[0] += 1
                    try:
                        counts[1] += await self._deliver(bot, item, keep_going)
                    except Exception as exc:  # noqa: BLE001 - one broken delivery must not stop the others
                        log.exception("digest for chat %s failed unexpectedly", item.chat_id)
                        await asyncio.to_thread(self.service.mark_retry, item.delivery_id, f"internal error: {exc!r}")

        await asyncio.gather(*(worker() for _ in range(self.briefbot.settings.digest_send_concurrency)))
        return counts[0], counts[1]

    def render(self, item: Sendable) -> list[OutgoingMessage]:
        key = (item.edition_id, item.timezone)
        if key not in self._rendered:
            if len(self._rendered) > 512:
                self._rendered.clear()
            self._rendered[key] = digest_messages(item.digest, item.timezone)
        return self._rendered[key]

    async def _pace(self) -> None:
        """At most BRIEFBOT_DIGEST_MESSAGES_PER_SECOND, evenly spaced."""
        interval = 1.0 / self.briefbot.settings.digest_messages_per_second
        now = time.monotonic()
        wait = self._next_slot - now
        self._next_slot = max(now, self._next_slot) + interval
        if wait > 0:
            await asyncio.sleep(wait)

    async def _deliver(self, bot: Bot, item: Sendable, keep_going) -> int:
        messages = self.render(item)
        service = self.service
        sent = 0
        for part in range(item.parts_sent, len(messages)):
            if not keep_going():
                return sent
            if part > item.parts_sent:
                await asyncio.sleep(1.0)  # one message a second within a chat
            await self._pace()

            async def before_send(part: int = part) -> Any:
                if not await asyncio.to_thread(service.mark_sending, item.delivery_id, part, len(messages)):
                    raise DeliveryCancelled()

            message = messages[part]
            try:
                result = await send_digest_part(bot, item.chat_id, message.html, message.buttons, before_send)
            except DeliveryCancelled:
                return sent
            except Exception as exc:  # noqa: BLE001 - every failure is classified and recorded
                kind = failure_kind(exc)
                error = f"{type(exc).__name__}: {exc}"
                self.briefbot.metrics.digests_failed.labels(kind).inc()
                if kind == "blocked":
                    await asyncio.to_thread(service.mark_blocked, item.delivery_id, error)
                elif kind == "refused":
                    await asyncio.to_thread(service.mark_failed, item.delivery_id, error)
                elif kind == "ambiguous":
                    if not await asyncio.to_thread(service.mark_uncertain, item.delivery_id, part, error):
                        return sent  # taken over by another process meanwhile: it goes on from here
                    continue
                else:
                    await asyncio.to_thread(service.mark_retry, item.delivery_id, error)
                return sent
            mine = await asyncio.to_thread(service.mark_part_sent, item.delivery_id, part, result.message_id)
            sent += 1
            if part == len(messages) - 1:
                self.briefbot.metrics.digests_sent.inc()
            if not mine:
                return sent  # taken over by another process meanwhile: it goes on from here
        return sent
