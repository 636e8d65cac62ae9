"""`briefbot`: everything a user can do in Telegram, plus the operator's commands, from the terminal."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Iterator, TextIO

from bot.app import SAMPLES_DIR, Briefbot, configure_logging
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


def _open(args: argparse.Namespace) -> Briefbot:
    return Briefbot.open(_settings(args))


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

    from index.parsers import iter_inputs

    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"briefbot: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    if not any(True for _ in iter_inputs(paths)):
        print("briefbot: nothing to ingest: no files found in " + ", ".join(map(str, paths)), file=sys.stderr)
        return EXIT_FAILED
    app = _open(args)
    with tqdm(desc="ingesting", unit=" articles", disable=args.quiet or None, file=sys.stderr) as bar:
        report = app.corpus.ingest_paths(paths, progress=bar.update)
    for failure in report.failures:
        print(f"skipped {failure.origin}: {failure.reason}", file=sys.stderr)
    print(report.summary())
    if report.failures and not (report.added or report.updated or report.unchanged):
        return EXIT_FAILED
    return EXIT_OK


def cmd_reindex(args: argparse.Namespace) -> int:
    app = Briefbot.open(_settings(args), sync_index=False)
    count = app.corpus.reindex()
    print(f"index rebuilt: {count} passage(s)")
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
    }
    if args.json:
        _print_json(data)
    else:
        print(f"{articles} article(s), {passages} passage(s); index {index_state} with {len(held)} passage(s); "
              + ("database and index agree" if consistent else "database and index disagree (repaired on next start)"))
    return EXIT_OK


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
    if articles == 0:
        report = app.corpus.ingest_paths(sorted(SAMPLES_DIR.glob("*.txt")))
        print("sample articles: " + report.summary())
    if settings.telegram_bot_token:
        from bot.telegram_app import run

        return run(app)
    print("TELEGRAM_BOT_TOKEN is not set: starting the terminal chat instead.")
    args.json = False
    args.chat_id = "demo"
    return cmd_chat(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "ingest": cmd_ingest, "reindex": cmd_reindex, "status": cmd_status, "ask": cmd_ask, "chat": cmd_chat,
    "attribute": cmd_attribute, "start": cmd_start, "run": cmd_run,
    "eval": cmd_eval,
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="data directory (env BRIEFBOT_DATA_DIR, default ./data)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    parser = argparse.ArgumentParser(prog="briefbot", description="News briefings with their sources.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", parents=[common], help="ingest article files or folders (.txt, .jsonl)")
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

    sub.add_parser("reindex", parents=[common], help="rebuild the FAISS index from the database")
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

    sub.add_parser("run", parents=[common], help="run the Telegram bot (needs TELEGRAM_BOT_TOKEN)")
    sub.add_parser("start", parents=[common], help="the demo: sample articles, then Telegram or the terminal chat")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging("DEBUG" if args.verbose else settings.log_level)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: a clear message, the details in the log
        log.debug("command failed", exc_info=True)
        print(f"briefbot: {args.command} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
