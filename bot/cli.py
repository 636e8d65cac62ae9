"""`briefbot`: everything a user can do in Telegram, plus the operator's commands, from the terminal."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Iterator, TextIO

from bot import cli_migrate
from bot.app import SAMPLES_DIR, Briefbot, configure_logging, redact, redact_token_in_logs
from bot.render_text import render_answer, render_reply
from bot.service import BadQuestion
from bot.settings import Settings

log = logging.getLogger("briefbot")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    if getattr(args, "data_dir", None):
        settings.data_dir = Path(args.data_dir)
    return settings


def _open(args: argparse.Namespace, writer: bool = False) -> Briefbot:
    """`writer`: the command ingests (once a worker publishes index snapshots, it publishes one too)."""
    return Briefbot.open(_settings(args), writer=writer)


def _jsonl(stream: TextIO, what: str) -> Iterator[tuple[int, dict | None, str | None]]:
    """Lines of a JSONL stream as (line number, object, error)."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"{what} line {number} is not JSON ({exc.msg})"
            continue
        if not isinstance(item, dict):
            yield number, None, f"{what} line {number} is not a JSON object"
            continue
        yield number, item, None


def _print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# --- commands -------------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bot.corpus import IngestReport
    from index.parsers import iter_inputs

    urls = [p for p in args.paths if _is_web_address(p)]
    paths = [Path(p) for p in args.paths if not _is_web_address(p)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"briefbot: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    if paths and not urls and not any(True for _ in iter_inputs(paths)):
        print("briefbot: nothing to ingest: no files found in " + ", ".join(map(str, paths)), file=sys.stderr)
        return EXIT_FAILED
    app = _open(args, writer=True)
    report = IngestReport()
    if paths:
        with tqdm(desc="ingesting", unit=" articles", disable=args.quiet or None, file=sys.stderr) as bar:
            report = app.corpus.ingest_paths(paths, progress=bar.update)
    if urls:
        report.merge(_ingest_urls(app, urls))
    for failure in report.failures:
        print(f"skipped {failure.origin}: {failure.reason}", file=sys.stderr)
    print(report.summary())
    if report.failures and not (report.added or report.updated or report.unchanged):
        return EXIT_FAILED
    return EXIT_OK


def cmd_reindex(args: argparse.Namespace) -> int:
    app = Briefbot.open(_settings(args), sync_index=False, writer=True)
    count = app.corpus.reindex()
    print(f"index rebuilt: {count} passage(s)")
    if args.sentences:
        added = app.corpus.add_sentence_vectors(lambda done: log.info("sentence vectors: %d passage(s)", done))
        print(f"sentence vectors added to {added} passage(s)")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    app = Briefbot.open(_settings(args), sync_index=False)
    articles, passages = app.corpus.store.counts()
    held = app.corpus.index.ids() if app.corpus.index_path.exists() else set()
    if app.corpus.index_path.exists():
        from index.vectors import IndexCorrupt, VectorIndex

        try:
            held = VectorIndex.load(app.corpus.index_path, app.corpus.index.dim).ids()
            index_state = "readable"
        except IndexCorrupt:
            index_state = "corrupt (run `briefbot reindex`)"
    else:
        index_state = "missing (built on next start)"
    stored = app.corpus.store.passage_ids()
    consistent = held == stored
    data = {
        "database": app.settings.resolved_database_url.split("@")[-1], "articles": articles, "passages": passages,
        "index": index_state, "index_passages": len(held), "consistent": consistent,
        "snapshot": _snapshot_status(app),
    }
    if args.json:
        _print_json(data)
    else:
        print(f"{articles} article(s), {passages} passage(s); index {index_state} with {len(held)} passage(s); "
              + ("database and index agree" if consistent else "database and index disagree (repaired on next start)"))
        if data["snapshot"]:
            snap = data["snapshot"]
            print(f"index snapshot {snap['version']} published {snap['published_at']} with {snap['passages']} "
                  f"passage(s); {snap['on_disk']} snapshot(s) on disk")
    return EXIT_OK


def _snapshot_status(app: Briefbot) -> dict | None:
    """The published index snapshot, if a worker publishes them (bot/snapshots.py)."""
    from bot.snapshots import read_published

    published = read_published(app.corpus.store)
    if published is None:
        return None
    return {"version": published.version, "passages": published.passages, "kind": published.kind,
            "published_at": published.published_at.isoformat(), "on_disk": len(app.corpus.snapshots.versions())}


def cmd_ask(args: argparse.Namespace) -> int:
    if args.questions:
        return _ask_many(args)
    if not args.question:
        print("briefbot: give a question, or --questions FILE.jsonl", file=sys.stderr)
        return EXIT_USAGE
    question = " ".join(args.question)
    app = _open(args)
    try:
        answer = app.service.ask(question, k=args.k)
    except BadQuestion as exc:
        print(f"briefbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        _print_json(answer.to_json())
    else:
        print(render_answer(answer, bold=sys.stdout.isatty()))
    return EXIT_OK


def _ask_many(args: argparse.Namespace) -> int:
    path = Path(args.questions)
    try:
        stream = sys.stdin if args.questions == "-" else path.open(encoding="utf-8")
    except OSError as exc:
        print(f"briefbot: can't read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    app = _open(args)
    with stream:
        for _number, item, error in _jsonl(stream, str(path)):
            if error:
                _print_json({"id": None, "error": error})
                continue
            try:
                answer = app.service.ask(str(item.get("question") or ""), k=args.k)
                _print_json({"id": item.get("id"), **answer.to_json()})
            except BadQuestion as exc:
                _print_json({"id": item.get("id"), "question": item.get("question"), "error": str(exc)})
    return EXIT_OK


def cmd_chat(args: argparse.Namespace) -> int:
    """A terminal conversation over the same service the Telegram bot uses."""
    app = _open(args)
    interactive = sys.stdin.isatty() and not args.json
    chat_id = f"cli:{args.chat_id}"
    if interactive:
        articles, _ = app.corpus.store.counts()
        print(f"Briefbot — {articles} article(s). Ask a question; 'more', 'who said that?', 'what happened next?' "
              "follow up. Ctrl-D quits.")
    while True:
        if interactive:
            try:
                message = input("you> ")
            except (EOFError, KeyboardInterrupt):
                print()
                return EXIT_OK
        else:
            message = sys.stdin.readline()
            if not message:
                return EXIT_OK
            message = message.rstrip("\n")
        try:
            reply = app.service.chat(chat_id, message)
        except BadQuestion as exc:
            if args.json:
                _print_json({"kind": "error", "message": str(exc), "results": []})
            else:
                print(str(exc))
            continue
        if args.json:
            _print_json(reply.to_json())
        else:
            print(render_reply(reply, bold=sys.stdout.isatty()) + "\n")


def cmd_attribute(args: argparse.Namespace) -> int:
    from index.attribution import extract_speakers

    for _number, item, error in _jsonl(sys.stdin, "stdin"):
        if error:
            print(f"briefbot: {error}", file=sys.stderr)
            continue
        speakers = extract_speakers(str(item.get("text") or ""))
        if args.json:
            _print_json({"id": item.get("id"), "speakers": [s.as_dict() for s in speakers]})
        else:
            names = "; ".join(f"{s.name} ({s.cue})" for s in speakers) or "nobody quoted"
            print(f"{item.get('id')}: {names}")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    """Answer quality on development sets (formats and scoring rule: ../shared/data/README.md).

    The hybrid system and each baseline named by --baseline run over the same sets in this one process.
    """
    from bot import evaluation

    if not (args.qa or args.dialogues or args.attribution):
        print("briefbot: give --qa, --dialogues and/or --attribution FILE", file=sys.stderr)
        return EXIT_USAGE
    report: dict = {}
    if args.attribution:
        report["attribution"] = evaluation.evaluate_attribution(evaluation.read_jsonl(Path(args.attribution)))
    if args.qa or args.dialogues:
        app = _open(args)
        modes = ["hybrid"] + [m for m in (args.baseline or ["bm25", "dense"]) if m != "hybrid"]
        if args.qa:
            items = evaluation.read_jsonl(Path(args.qa))
            report["qa"] = {
                mode: evaluation.evaluate_qa(lambda q, m=mode: app.service.ask(q, k=5, mode=m), items).to_json()
                for mode in modes
            }
        if args.dialogues:
            report["dialogues"] = evaluation.evaluate_dialogues(app.service, evaluation.read_jsonl(Path(args.dialogues)))
    if args.json:
        _print_json(report)
        return EXIT_OK
    if "qa" in report:
        print(f"{'QA':<10} {'R@1':>6} {'R@3':>6} {'R@5':>6} {'MRR':>6}  declined unanswerable  wrongly declined")
        for mode, qa in report["qa"].items():
            print(f"{mode:<10} {qa['recall@1']:>6.3f} {qa['recall@3']:>6.3f} {qa['recall@5']:>6.3f} {qa['mrr']:>6.3f}"
                  f"  {qa['declined_correctly']:>4}/{qa['unanswerable']:<17} {qa['wrongly_declined']}/{qa['answerable']}")
    if "dialogues" in report:
        d = report["dialogues"]
        print(f"Dialogues: {d['right']}/{d['turns']} turns right (first 3 passages contain the answer)")
    if "attribution" in report:
        a = report["attribution"]
        print(f"Attribution: precision {a['precision']:.3f}  recall {a['recall']:.3f}  F1 {a['f1']:.3f}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed and size, each beside a baseline run in the same process (see bot/bench.py)."""
    from bot import bench
    from bot.corpus import Corpus
    from index.embeddings import SentenceTransformerEncoder

    shared = Path(args.shared)
    if not (shared / "reuters-dev" / "articles.jsonl").exists():
        print(f"briefbot: no reuters-dev corpus under {shared} (give --shared)", file=sys.stderr)
        return EXIT_USAGE
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        print("briefbot: --sizes takes numbers like 10000,100000", file=sys.stderr)
        return EXIT_USAGE
    encoder = Corpus(_settings(args)).encoder
    reference = encoder if isinstance(encoder, SentenceTransformerEncoder) else SentenceTransformerEncoder()
    report = bench.run(shared, encoder, reference, sizes, args.ingest_articles, args.rounds, args.subscribers,
                       args.topic_sets, _settings(args).models_dir)
    if args.json:
        _print_json(report)
    else:
        print(bench.render(report))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """The Telegram bot (long polling, or a webhook server when WEBHOOK_URL is set)."""
    from bot.telegram_app import NO_TOKEN, run

    settings = _settings(args)
    if not settings.telegram_bot_token:
        print(NO_TOKEN, file=sys.stderr)
        return EXIT_USAGE
    return run(Briefbot.open(settings))


def cmd_start(args: argparse.Namespace) -> int:
    """The demo: ingest the bundled samples if the corpus is empty, then run in Telegram or the terminal."""
    settings = _settings(args)
    app = Briefbot.open(settings)
    articles, _ = app.corpus.store.counts()
    if articles == 0 and app.corpus.role != "follower":
        report = app.corpus.ingest_paths(sorted(SAMPLES_DIR.glob("*.txt")))
        print("sample articles: " + report.summary())
    if settings.telegram_bot_token:
        from bot.telegram_app import run

        return run(app)
    print("TELEGRAM_BOT_TOKEN is not set: starting the terminal chat instead.")
    args.json = False
    args.chat_id = "demo"
    return cmd_chat(args)


def cmd_worker(args: argparse.Namespace) -> int:
    """The single writer of a multi-process deployment: ingest watched folders and due feeds, publish snapshots."""
    import signal
    import threading

    from bot.worker import IngestWorker

    settings = _settings(args)
    if settings.index_snapshots == "off":
        print("briefbot: the worker publishes index snapshots; unset BRIEFBOT_INDEX_SNAPSHOTS=off", file=sys.stderr)
        return EXIT_USAGE
    if args.every is not None and args.every <= 0:
        print("briefbot: --every takes a number of seconds above 0", file=sys.stderr)
        return EXIT_USAGE
    folders = [Path(p) for p in args.watch] if args.watch else settings.watch_dirs
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        print(f"briefbot: no such folder to watch: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    app = Briefbot.open(settings, writer=True, publish=True)
    worker = IngestWorker(app, folders, args.every or settings.worker_interval_seconds, poll_feeds=not args.no_feeds)
    if args.once:
        report = worker.run_once()
        print(report.summary())
        return EXIT_OK
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker.run(stop)
    return EXIT_OK


# --- daily digests ---------------------------------------------------------------------------------------------
def _when(value: str | None, what: str):
    """An ISO date-time from the command line (UTC when it names no zone); None when not given."""
    from datetime import datetime, timezone

    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} must be an ISO date and time, e.g. 1987-03-02T08:00 or 1987-03-02T08:00+01:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _digest_output(digest, zone: str) -> dict:
    """The digest as data, plus the Telegram messages a subscriber receives (HTML and buttons)."""
    from handlers.digest_render import digest_messages

    messages = [{"html": m.html, "buttons": m.buttons.to_dict()["inline_keyboard"] if m.buttons else []}
                for m in digest_messages(digest, zone)]
    return {**digest.to_json(), "timezone": zone, "messages": messages}


def cmd_digest(args: argparse.Namespace) -> int:
    """What a subscriber would receive now (or at --now): `--chat-id` for a subscriber's own topics and window."""
    from bot.digest import render_digest_text
    from bot.subscriptions import BadSetting

    app = _open(args)
    try:
        now, since = _when(args.now, "--now"), _when(args.since, "--since")
        digest = app.digests.preview(topics=args.topics or (), now=now, since=since, chat_id=args.chat_id)
    except (BadSetting, ValueError) as exc:
        print(f"briefbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    zone = app.digests.view(args.chat_id).timezone if args.chat_id is not None else "UTC"
    if args.json:
        _print_json(_digest_output(digest, zone))
    else:
        print(render_digest_text(digest))
    return EXIT_OK


def cmd_subscribe(args: argparse.Namespace) -> int:
    """/subscribe, /time, /timezone and /topics add for a chat, from the terminal."""
    from bot.subscriptions import BadSetting

    app = _open(args)
    service = app.digests
    try:
        view = service.subscribe(args.chat_id, args.topics or ())
        if args.clear_topics:
            view = service.clear_topics(args.chat_id)
        if args.remove_topics:
            view, missing = service.remove_topics(args.chat_id, args.remove_topics)
            if missing:
                print(f"briefbot: not among the chat's topics: {', '.join(missing)}", file=sys.stderr)
        if args.time:
            view = service.set_time(args.chat_id, args.time)
        if args.timezone:
            view = service.set_timezone(args.chat_id, args.timezone)
    except BadSetting as exc:
        hint = f" (did you mean: {', '.join(exc.suggestions)})" if exc.suggestions else ""
        print(f"briefbot: {exc}{hint}", file=sys.stderr)
        return EXIT_USAGE
    _print_subscription(view, args.json)
    return EXIT_OK


def cmd_unsubscribe(args: argparse.Namespace) -> int:
    app = _open(args)
    was = app.digests.unsubscribe(args.chat_id)
    print(f"chat {args.chat_id} unsubscribed" if was else f"chat {args.chat_id} was not subscribed")
    return EXIT_OK


def _print_subscription(view, as_json: bool) -> None:
    if as_json:
        _print_json(view.to_json())
        return
    state = "paused (unreachable)" if view.paused else ("subscribed" if view.subscribed else "not subscribed")
    nxt = f", next {view.next_digest:%Y-%m-%d %H:%M %Z}" if view.next_digest and view.subscribed else ""
    topics = ", ".join(view.topics) or "everything"
    print(f"chat {view.chat_id}: {state}; daily at {view.digest_time} {view.timezone}{nxt}; topics: {topics}")
    for item in view.recent:
        extra = " (uncertain: assumed delivered)" if item["uncertain"] else ""
        error = f" — {item['error']}" if item["error"] and item["status"] != "sent" else ""
        print(f"    {item['date']}: {item['status']}{extra}{error}")


def cmd_subscriptions(args: argparse.Namespace) -> int:
    """Every subscriber (or one), with its schedule and its last deliveries."""
    app = Briefbot.open(_settings(args), sync_index=False)
    views = [app.digests.view(args.chat_id)] if args.chat_id is not None else app.digests.subscriptions()
    for view in views:
        _print_subscription(view, args.json)
    if not args.json and args.chat_id is None:
        counts = app.corpus.store.delivery_status_counts()
        print(f"{len(views)} chat(s); deliveries: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    return EXIT_OK


def cmd_bench_digest(args: argparse.Namespace) -> int:
    """Compose for N subscribers over K topic sets, beside composing per subscriber, in one process."""
    from bot import digest_eval

    try:
        when = _when(args.now, "--now")
    except ValueError as exc:
        print(f"briefbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.subscribers < 1 or args.topic_sets < 1:
        print("briefbot: --subscribers and --topic-sets must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    app = _open(args)
    now = when or digest_eval.default_now(app.corpus.store)
    try:
        result = digest_eval.benchmark(app.digests, args.subscribers, args.topic_sets, now, args.baseline_sample)
    except ValueError as exc:
        print(f"briefbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        _print_json({"now": now.isoformat(), **result})
        return EXIT_OK
    print(f"window: 24 h to {now.isoformat()}")
    print(f"once per topic set : {result['subscribers']:,} subscribers, {result['topic_sets']} topic sets -> "
          f"{result['editions']} editions in {result['grouped_seconds']:.2f} s")
    print(f"per subscriber     : {result['baseline_seconds_per_subscriber'] * 1000:.1f} ms each "
          f"(measured on {result['baseline_sample']}) -> {result['baseline_seconds_extrapolated']:,.1f} s "
          f"for {result['subscribers']:,} (extrapolated)")
    print(f"speed-up           : {result['speedup']}x")
    return EXIT_OK


def cmd_eval_digest(args: argparse.Namespace) -> int:
    """ROUGE-1/2/L of the digest's key sentences against human summaries, beside a first-sentences baseline."""
    from bot import digest_eval

    path = Path(args.file)
    if not path.exists():
        print(f"briefbot: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    app = _open(args, writer=True)
    report = app.corpus.ingest_paths([path])  # already stored articles are skipped
    if report.added or report.updated:
        log.info("ingested %s", report.summary())
    result = digest_eval.evaluate_key_sentences(app.corpus.store, digest_eval.read_items(path), args.sentences)
    if args.json:
        _print_json(result.to_json())
    else:
        print(result.table())
    return EXIT_OK


def cmd_ask_about(args: argparse.Namespace) -> int:
    """A digest's "Ask about this": the story becomes the focus of `briefbot chat --chat-id ID`."""
    app = _open(args)
    reply = app.service.focus_on(f"cli:{args.chat_id}", args.article_id)
    if args.json:
        _print_json(reply.to_json())
    else:
        print(render_reply(reply, bold=sys.stdout.isatty()))
    return EXIT_OK if reply.answer.results else EXIT_FAILED


DIGEST_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ask-about": cmd_ask_about,
    "digest": cmd_digest, "subscribe": cmd_subscribe, "unsubscribe": cmd_unsubscribe,
    "subscriptions": cmd_subscriptions, "bench-digest": cmd_bench_digest, "eval-digest": cmd_eval_digest,
}


def _add_digest_parsers(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("digest", parents=[common], help="the daily digest a subscriber would receive now")
    p.add_argument("--json", action="store_true", help="stories as data plus the Telegram messages (HTML, buttons)")
    p.add_argument("--now", help="compose as at this ISO time (default: now)")
    p.add_argument("--since", help="stories since this ISO time (default: the last digest, or 24 h)")
    p.add_argument("--topics", help='free-text topics, comma-separated: "oil prices, iran"')
    p.add_argument("--chat-id", type=int, help="a subscriber: its topics, window and time zone")

    p = sub.add_parser("subscribe", parents=[common], help="subscribe a chat (and set its time, time zone, topics)")
    p.add_argument("--chat-id", type=int, required=True)
    p.add_argument("--topics", help='topics to add, comma-separated: "oil prices, iran"')
    p.add_argument("--time", help="HH:MM in the chat's time zone (default BRIEFBOT_DIGEST_TIME)")
    p.add_argument("--timezone", help="Area/City, e.g. Europe/Berlin (default BRIEFBOT_DIGEST_TIMEZONE)")
    p.add_argument("--remove-topics", help='topics to stop following, by text or number: "coffee" or "2"')
    p.add_argument("--clear-topics", action="store_true", help="follow everything")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("ask-about", parents=[common], help="a digest story's Ask about this, for `chat --chat-id`")
    p.add_argument("--chat-id", default="terminal", help="the conversation (as in `briefbot chat --chat-id`)")
    p.add_argument("article_id", type=int, help="the story's article_id (from `briefbot digest --json`)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("unsubscribe", parents=[common], help="stop a chat's daily digest")
    p.add_argument("--chat-id", type=int, required=True)

    p = sub.add_parser("subscriptions", parents=[common], help="subscribers, schedules and recent deliveries")
    p.add_argument("--chat-id", type=int)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("bench-digest", parents=[common], help="time composing digests for many subscribers")
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--topic-sets", type=int, default=50)
    p.add_argument("--baseline-sample", type=int, default=100, help="subscribers composed one by one for the baseline")
    p.add_argument("--now", help="end of the 24 h window (default: a minute after the newest article)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("eval-digest", parents=[common], help="ROUGE of digest key sentences vs human summaries")
    p.add_argument("file", help='JSONL articles with "summaries" (e.g. ../shared/data/gum-news/articles.jsonl)')
    p.add_argument("--sentences", type=int, default=2, help="at most this many key sentences per story")
    p.add_argument("--json", action="store_true")


# --- feeds and web pages -----------------------------------------------------------------------------------------
def _is_web_address(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def _ingest_urls(app: Briefbot, urls: list[str]):
    """Fetch each page safely (BRIEFBOT_FETCH_* limits, public addresses only) and ingest its story."""
    from bot.feeds import read_page
    from bot.fetch import Fetcher

    fetcher = Fetcher.from_settings(app.settings)
    return app.corpus.ingest_articles(read_page(fetcher, url) for url in urls)


def _feed_json(feed, articles: int) -> dict:
    def when(value):
        return value.isoformat() if value else None

    return {"id": feed.id, "url": feed.url, "title": feed.title, "every_minutes": feed.interval_minutes,
            "status": feed.status, "articles": articles, "last_polled_at": when(feed.last_polled_at),
            "next_poll_at": when(feed.next_poll_at), "failures": feed.consecutive_failures,
            "failing_since": when(feed.failing_since), "last_error": feed.last_error}


def cmd_feeds(args: argparse.Namespace) -> int:
    """feeds add / list / remove / import / export / poll: the feeds the bot follows."""
    from bot.feeds import BadFeed, FeedExists

    action = args.feeds_command
    app = Briefbot.open(_settings(args), sync_index=action == "poll", writer=action == "poll")
    service = app.feeds
    try:
        if action == "add":
            try:
                feed = service.add(args.url, args.every)
            except FeedExists as exc:
                print(f"already following feed #{exc.feed.id}: {exc.feed.url}")
                return EXIT_OK
            print(f"feed #{feed.id} added: {feed.url} (every {feed.interval_minutes} min; "
                  "the running bot reads it within a minute, or run `briefbot feeds poll`)")
        elif action == "list":
            rows = service.feeds()
            for feed, articles in rows:
                if args.json:
                    _print_json(_feed_json(feed, articles))
                    continue
                when = f"{feed.last_polled_at:%Y-%m-%d %H:%M}" if feed.last_polled_at else "never"
                error = f"\n      last error: {feed.last_error}" if feed.last_error else ""
                print(f"#{feed.id:<3} {feed.status:<4} every {feed.interval_minutes} min, {articles} article(s), "
                      f"last polled {when}  {feed.url}" + (f"  ({feed.title})" if feed.title else "") + error)
            if not rows and not args.json:
                print("no feeds yet: briefbot feeds add URL")
        elif action == "remove":
            feed = service.remove(args.feed)
            if feed is None:
                print(f"briefbot: no feed {args.feed!r} (see `briefbot feeds list`)", file=sys.stderr)
                return EXIT_USAGE
            print(f"feed #{feed.id} removed: {feed.url} (its articles stay)")
        elif action == "import":
            try:
                data = Path(args.file).read_bytes()
            except OSError as exc:
                print(f"briefbot: can't read {args.file}: {exc.strerror or exc}", file=sys.stderr)
                return EXIT_USAGE
            result = service.import_opml(data)
            print(f"{len(result.added)} feed(s) added, {len(result.existing)} already followed, "
                  f"{len(result.invalid)} skipped")
            for url, reason in result.invalid:
                print(f"skipped {url}: {reason}", file=sys.stderr)
        elif action == "export":
            sys.stdout.write(service.export_opml())
        elif action == "poll":
            run = service.poll_due(force=args.all)
            if run is None:  # pragma: no cover - only one poll runs per process
                print("briefbot: a poll is already running", file=sys.stderr)
                return EXIT_FAILED
            for outcome in run.outcomes:
                print(outcome.line())
                for note in outcome.notes:
                    print(f"    {note}")
            if not run.outcomes:
                print("no feed is due (use --all to poll every feed now)")
            if run.outcomes and all(o.state == "failed" for o in run.outcomes):
                return EXIT_FAILED
    except BadFeed as exc:
        print(f"briefbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _add_feed_parsers(sub, common: argparse.ArgumentParser) -> None:
    # the options go on each action's parser only: argparse lets a nested parser's defaults undo the outer ones
    p = sub.add_parser("feeds", help="RSS/Atom feeds the bot follows (add, list, remove, poll...)")
    feeds = p.add_subparsers(dest="feeds_command", required=True)
    q = feeds.add_parser("add", parents=[common], help="follow a feed")
    q.add_argument("url")
    q.add_argument("--every", type=int, metavar="MINUTES", help="poll interval (default BRIEFBOT_FEED_INTERVAL_MINUTES)")
    q = feeds.add_parser("list", parents=[common], help="feeds with their state and last error")
    q.add_argument("--json", action="store_true")
    q = feeds.add_parser("remove", parents=[common], help="stop following a feed (its articles stay)")
    q.add_argument("feed", metavar="URL|ID")
    q = feeds.add_parser("import", parents=[common], help="follow every feed of an OPML file")
    q.add_argument("file", metavar="FILE.opml")
    feeds.add_parser("export", parents=[common], help="every feed as OPML, to stdout")
    q = feeds.add_parser("poll", parents=[common], help="poll the feeds that are due, once, now (for cron)")
    q.add_argument("--all", action="store_true", help="every feed, due or not")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ingest": cmd_ingest, "reindex": cmd_reindex, "status": cmd_status, "ask": cmd_ask, "chat": cmd_chat,
    "attribute": cmd_attribute, "start": cmd_start, "run": cmd_run, "worker": cmd_worker,
    "eval": cmd_eval, "bench": cmd_bench,
}


def cmd_encoders(args: argparse.Namespace) -> int:
    """sentence-transformers fp32 vs ONNX fp32 and int8 in one process: speed, cosine, Recall@3 (docs/encoders.md)."""
    from bot import encoder_bench
    from index.embeddings import SentenceTransformerEncoder
    from index.onnx_encoder import OnnxEncoder

    settings = _settings(args)
    shared = Path(args.shared_data) if args.shared_data else Path(__file__).resolve().parents[2] / "shared" / "data"
    qa = Path(args.qa) if args.qa else shared / "dev-qa.jsonl"
    if not args.build and (not shared.is_dir() or not qa.is_file()):
        print(f"briefbot: need the shared data folder and dev-qa.jsonl (looked in {shared}); see --shared-data",
              file=sys.stderr)
        return EXIT_USAGE
    if args.passages < 100 or min(args.rounds, args.chunk, args.trials) < 1 or args.distractors < 0:
        print("briefbot: --passages must be >= 100; --rounds, --chunk, --trials >= 1", file=sys.stderr)
        return EXIT_USAGE
    cache = Path(args.cache_dir) if args.cache_dir else settings.models_dir
    if args.build:
        for variant in ("fp32", "int8"):
            OnnxEncoder(_packaged_model(), cache, variant, slug="minilm")
        print(f"ONNX models ready in {cache}")
        return EXIT_OK
    corpus = encoder_bench.load_corpus(shared, qa, args.passages, settings.passage_max_words)
    batch, threads = settings.embedding_batch_size, settings.encoder_threads
    packaged = {"model_dir": _packaged_model(), "cache_dir": cache, "batch_size": batch, "threads": threads,
                "slug": "minilm"}
    report = encoder_bench.measure({
        "torch": lambda: SentenceTransformerEncoder(batch_size=batch, threads=settings.torch_threads),
        "onnx-fp32": lambda: OnnxEncoder(variant="fp32", **packaged),
        "onnx-int8": lambda: OnnxEncoder(variant="int8", **packaged),
    }, corpus, chunk=args.chunk, rounds=args.rounds, trials=args.trials, distractors=args.distractors)
    if args.json:
        _print_json(report)
    else:
        print(encoder_bench.format_table(report))
    return EXIT_OK


def _packaged_model() -> Path:
    from index.embeddings import packaged_model_path

    return packaged_model_path()


COMMANDS["encoders"] = cmd_encoders

COMMANDS.update(DIGEST_COMMANDS)
COMMANDS["feeds"] = cmd_feeds
COMMANDS["migrate"] = lambda args: cli_migrate.cmd_migrate(args, _settings(args))


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (env BRIEFBOT_DATA_DIR, default ./data)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    parser = argparse.ArgumentParser(prog="briefbot", description="News briefings with their sources.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", parents=[common],
                       help="ingest article files or folders (.txt, .jsonl) and web pages (http(s) URLs)")
    p.add_argument("paths", nargs="+")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("ask", parents=[common], help="answer one question with attributed passages")
    p.add_argument("question", nargs="*")
    p.add_argument("-k", type=int, default=None, help="how many passages (default BRIEFBOT_RESULTS_PER_ANSWER)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--questions", metavar="FILE.jsonl", help='answer {"id","question"} lines, one JSON line out each')

    p = sub.add_parser("chat", parents=[common], help="a conversation in the terminal (same answers as Telegram)")
    p.add_argument("--json", action="store_true", help="one JSON object per reply (reads one message per line)")
    p.add_argument("--chat-id", default="terminal", help="conversation to continue (default: terminal)")

    p = sub.add_parser("reindex", parents=[common], help="rebuild the FAISS index from the database")
    p.add_argument("--sentences", action="store_true",
                   help="also give passages stored by an older version their sentence vectors (for the bold "
                        "sentence; re-runs the encoder over them)")
    p = sub.add_parser("status", parents=[common], help="what is stored, and whether the index agrees with it")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("attribute", parents=[common], help='speakers of {"id","text"} JSONL lines on stdin')
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("eval", parents=[common], help="measure answer quality on development sets")
    p.add_argument("--qa", metavar="FILE", help='{"id","question","article_id","answer","type"} lines')
    p.add_argument("--dialogues", metavar="FILE", help='{"id","turns":[{"q","answer",...}]} lines')
    p.add_argument("--attribution", metavar="FILE", help='{"id","text","speakers":[...]} lines')
    p.add_argument("--baseline", action="append", choices=["bm25", "dense"],
                   help="also run with only this retriever (repeatable; default: both)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("bench", parents=[common], help="speed and size, each beside a baseline in the same run")
    p.add_argument("--shared", default="../shared/data", help="the shared data folder (reuters-dev)")
    p.add_argument("--sizes", default="10000,100000", help="corpus sizes in passages (default 10000,100000)")
    p.add_argument("--ingest-articles", type=int, default=300, help="articles for the ingest measurement")
    p.add_argument("--rounds", type=int, default=5, help="times each benchmark question is asked")
    p.add_argument("--subscribers", type=int, default=10_000)
    p.add_argument("--topic-sets", type=int, default=50)
    p.add_argument("--json", action="store_true")

    sub.add_parser("run", parents=[common], help="run the Telegram bot (needs TELEGRAM_BOT_TOKEN)")
    p = sub.add_parser("worker", parents=[common],
                       help="the single writer at scale: ingest watched folders and feeds, publish index snapshots")
    p.add_argument("--watch", action="append", metavar="DIR", help="folder to ingest from (repeatable; "
                   "default BRIEFBOT_WATCH)")
    p.add_argument("--every", type=float, metavar="SECONDS", help="cycle interval (BRIEFBOT_WORKER_INTERVAL_SECONDS)")
    p.add_argument("--no-feeds", action="store_true", help="do not poll feeds")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (for cron)")
    sub.add_parser("start", parents=[common], help="the demo: sample articles, then Telegram or the terminal chat")
    p = sub.add_parser("encoders", parents=[common], help="ONNX fp32/int8 vs sentence-transformers: speed and quality")
    p.add_argument("--passages", type=int, default=6000, help="passages embedded (the questions' articles + distractors)")
    p.add_argument("--distractors", type=int, default=3000, help="distractor passages in each retrieval index")
    p.add_argument("--trials", type=int, default=5, help="retrieval indexes, each with its own draw of distractors")
    p.add_argument("--rounds", type=int, default=5, help="times each dev-qa question is encoded for the latency")
    p.add_argument("--chunk", type=int, default=256, help="passages per encode call (each call sorts and batches by 32)")
    p.add_argument("--shared-data", help="folder with seed/, gum-news/, reuters-dev/ (default ../shared/data)")
    p.add_argument("--qa", help="questions file (default <shared-data>/dev-qa.jsonl)")
    p.add_argument("--cache-dir", help="where the ONNX exports live (default BRIEFBOT_MODELS_DIR or <data-dir>/models)")
    p.add_argument("--build", action="store_true", help="only export the ONNX models (if missing or damaged) and exit")
    p.add_argument("--json", action="store_true")
    _add_digest_parsers(sub, common)
    _add_feed_parsers(sub, common)
    cli_migrate.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging("DEBUG" if args.verbose else settings.log_level)
    redact_token_in_logs(settings.telegram_bot_token)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: a clear message, the details in the log
        log.debug("command failed", exc_info=True)
        print(f"briefbot: {args.command} failed: {redact(str(exc), settings.telegram_bot_token)}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
