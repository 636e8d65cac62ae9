"""Soak: N simulated users asking at once, for T seconds, through the Bot API test server (loopback only).

    .venv/bin/python scripts/soak.py --users 100 --seconds 120            # the load run
    .venv/bin/python scripts/soak.py --users 20 --seconds 600 --json      # the 10-minute memory soak

The bot is the real `briefbot run` in its own process, aimed at the test server on 127.0.0.1, over a corpus of
its own (the bundled sample articles unless --data-dir names a corpus to copy). Each user asks, waits for the
reply, asks again: one question in flight per user. A question is "What happened: <headline>?" for one of the
newest headlines, so every reply names the article it must be about. At the end: questions per second, reply
latency (p50/p99), replies lost (none within --reply-timeout), crossed (about another user's question),
duplicated, and the bot's resident memory at the start (after a warm-up round) and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.botapi import BotApiServer, running_server  # noqa: E402

log = logging.getLogger("soak")
FIRST_USER = 900_000
QUESTIONS = 6


@dataclass
class Report:
    users: int
    seconds: float
    questions: int = 0
    answered: int = 0
    lost: int = 0
    crossed: int = 0
    duplicated: int = 0
    wrong: int = 0  # a reply about none of the questions (an apology, "slow down", ...)
    questions_per_second: float = 0.0
    p50_seconds: float = 0.0
    p99_seconds: float = 0.0
    max_seconds: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_max_mb: float = 0.0
    rss_samples_mb: list[float] = field(default_factory=list)
    api_violations: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.crossed or self.duplicated or self.wrong or self.api_violations)

    def summary(self) -> str:
        return "\n".join([
            f"soak: {self.users} users for {self.seconds:.0f} s against one `briefbot run` process",
            f"questions {self.questions}, answered {self.answered}, lost {self.lost}, crossed {self.crossed}, "
            f"duplicated {self.duplicated}, wrong {self.wrong}, refused by the Bot API {self.api_violations}",
            f"throughput {self.questions_per_second:.1f} questions/s; reply latency p50 {self.p50_seconds:.2f} s, "
            f"p99 {self.p99_seconds:.2f} s, max {self.max_seconds:.2f} s",
            f"bot RSS: start {self.rss_start_mb:.0f} MB, end {self.rss_end_mb:.0f} MB, max {self.rss_max_mb:.0f} MB "
            f"({self.rss_end_mb - self.rss_start_mb:+.0f} MB)",
        ])


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def prepare(data_dir: Path, source: Path | None) -> list[tuple[str, str]]:
    """The corpus (a copy of `source`, or the sample articles) and the questions: (question, expected title)."""
    from bot.app import SAMPLES_DIR, Briefbot
    from bot.settings import Settings

    if source is not None:
        shutil.copytree(source, data_dir)
    app = Briefbot.open(Settings(BRIEFBOT_DATA_DIR=data_dir, DATABASE_URL=None), writer=True)
    if source is None:
        app.corpus.ingest_paths(sorted(SAMPLES_DIR.glob("*.txt")))
    pairs = []
    for headline in app.service.latest(QUESTIONS):
        question = f"What happened: {headline.title.rstrip('.')}?"
        answer = app.service.ask(question)
        if answer.answered:
            pairs.append((question, answer.results[0].title))
    app.corpus.store.engine.dispose()
    if len({title for _, title in pairs}) < 2:
        raise SystemExit("soak: the corpus needs at least two articles whose headlines answer themselves")
    return pairs


async def start_bot(server: BotApiServer, data_dir: Path, log_file: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "WEBHOOK_URL", "HTTP_PROXY", "HTTPS_PROXY", "BRIEFBOT_FAKE_NOW")}
    env.update({
        "TELEGRAM_BOT_TOKEN": server.token, "TELEGRAM_API_BASE_URL": server.base_url, "NO_PROXY": "127.0.0.1",
        "HF_HUB_OFFLINE": "1", "BRIEFBOT_QUESTIONS_PER_MINUTE": "1000000", "BRIEFBOT_OPS_PORT": "0",
        "BRIEFBOT_DIGEST_POLL_SECONDS": "3600", "BRIEFBOT_FEED_POLL_SECONDS": "3600",
    })
    out = log_file.open("ab")
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "run", "--data-dir", str(data_dir),
                                                cwd=REPO, env=env, stdout=out, stderr=out)


class Soak:
    def __init__(self, server: BotApiServer, pairs: list[tuple[str, str]], users: int, reply_timeout: float):
        self.server = server
        self.pairs = pairs
        self.titles = {title for _, title in pairs}
        self.users = [FIRST_USER + i for i in range(users)]
        self.reply_timeout = reply_timeout
        self.latencies: list[float] = []
        self.asked: dict[int, list[str]] = {user: [] for user in self.users}  # expected title per question
        self.lost = 0
        self._waiting: dict[int, asyncio.Future] = {}

    async def collect(self) -> None:
        """Hand each message the bot sends to the user waiting in that chat. One reader for all users: the
        test server's own waiters rescan every event on every change, which at 100 users costs more CPU
        than the bot under test."""
        seen = 0
        events = self.server.events
        while True:
            await self.server.wait_for(lambda: events[seen:], 1, timeout=3600)
            new, seen = events[seen:], len(events)
            for event in new:
                waiter = self._waiting.pop(event.chat_id, None) if event.method == "sendMessage" else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)

    async def ask(self, user: int, round_: int) -> None:
        """One question and its one reply (or a loss after the timeout)."""
        question, title = self.pairs[(user + round_) % len(self.pairs)]
        self.asked[user].append(title)
        waiter = self._waiting[user] = asyncio.get_running_loop().create_future()
        sent_at = time.monotonic()
        self.server.send_text(user, question)
        try:
            event = await asyncio.wait_for(waiter, self.reply_timeout)
        except asyncio.TimeoutError:
            self._waiting.pop(user, None)
            self.lost += 1
            return
        self.latencies.append(event.at - sent_at)

    async def user(self, user: int, deadline: float) -> None:
        round_ = 0
        while time.monotonic() < deadline:
            await self.ask(user, round_)
            round_ += 1

    def judge(self, report: Report) -> None:
        """Match each chat's replies with the questions asked there, in order."""
        for user in self.users:
            replies = [e.text or "" for e in self.server.sent_messages(user, methods=["sendMessage"])]
            expected = self.asked[user]
            report.questions += len(expected)
            report.duplicated += max(0, len(replies) - len(expected))
            for title, reply in zip(expected, replies):
                if title in reply:
                    report.answered += 1
                elif any(other in reply for other in self.titles - {title}):
                    report.crossed += 1
                else:
                    report.wrong += 1
                    log.warning("chat %s: a reply about none of the questions: %r", user, reply[:200])
        report.lost = self.lost


async def soak(users: int, seconds: float, data_dir: Path, pairs: list[tuple[str, str]], log_file: Path,
               reply_timeout: float = 60.0, sample_every: float = 5.0) -> Report:
    report = Report(users, seconds)
    async with running_server() as server:
        driver = Soak(server, pairs, users, reply_timeout)
        for user in driver.users:
            server.add_user(user)
        bot = await start_bot(server, data_dir, log_file)
        collector = asyncio.create_task(driver.collect())
        try:
            await server.wait_for_request("setMyCommands", timeout=180)
            warm = driver.users[: len(pairs)]  # every question once, so start-up costs are not in the figures
            await asyncio.gather(*(driver.ask(user, 0) for user in warm))
            report.rss_start_mb = rss_mb(bot.pid)
            samples = [report.rss_start_mb]

            async def sample() -> None:
                while True:
                    await asyncio.sleep(sample_every)
                    samples.append(rss_mb(bot.pid))

            sampler = asyncio.create_task(sample())
            driver.latencies.clear()
            started = time.monotonic()
            deadline = started + seconds
            await asyncio.gather(*(driver.user(user, deadline) for user in driver.users))
            elapsed = time.monotonic() - started
            sampler.cancel()
            await asyncio.sleep(1.0)  # a duplicate would arrive now
            report.rss_end_mb = rss_mb(bot.pid)
            samples.append(report.rss_end_mb)
        finally:
            collector.cancel()
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(bot.wait(), 30)
                except asyncio.TimeoutError:
                    bot.kill()
                    await bot.wait()
        driver.judge(report)
        report.api_violations = len(server.violations)
    report.rss_max_mb = max(samples)
    report.rss_samples_mb = [round(s, 1) for s in samples]
    report.questions_per_second = len(driver.latencies) / elapsed if elapsed else 0.0
    if driver.latencies:
        ordered = sorted(driver.latencies)
        report.p50_seconds = statistics.median(ordered)
        report.p99_seconds = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        report.max_seconds = ordered[-1]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--data-dir", type=Path, help="a corpus to copy (default: the bundled sample articles)")
    parser.add_argument("--reply-timeout", type=float, default=60.0, help="a reply later than this is lost")
    parser.add_argument("--json", action="store_true", help="the report as one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.users < 1 or args.seconds <= 0:
        parser.error("--users and --seconds must be above 0")
    work = Path(tempfile.mkdtemp(prefix="briefbot-soak-"))
    try:
        pairs = prepare(work / "data", args.data_dir)
        report = asyncio.run(soak(args.users, args.seconds, work / "data", pairs, work / "bot.log",
                                  args.reply_timeout))
        if args.json:
            print(json.dumps(asdict(report)))
        else:
            print(report.summary())
        if not report.ok:
            print(f"soak: FAILED (bot log: {work / 'bot.log'})", file=sys.stderr)
            return 1
    except BaseException:
        print(f"soak: bot log in {work / 'bot.log'}", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
