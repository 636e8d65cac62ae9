"""The `briefbot` command as a user runs it: real processes, real model, a temporary data directory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DataCopy

BRIEFBOT = [sys.executable, "-m", "bot.cli"]
REPO = Path(__file__).resolve().parents[1]


def run(args: list[str], data: Path | DataCopy, stdin: str | None = None,
        timeout: int = 300) -> subprocess.CompletedProcess:
    """`briefbot ARGS` in a child process, on a data directory (SQLite) or a copy with its own database."""
    copy = data if isinstance(data, DataCopy) else DataCopy(data, None)
    return subprocess.run(
        BRIEFBOT + args + ["--data-dir", str(copy.data_dir)], input=stdin, capture_output=True, text=True,
        timeout=timeout, cwd=REPO, env=copy.env(),
    )


@pytest.fixture
def data_dir(seeded_copy) -> DataCopy:
    """The seeded corpus, copied for the test, on SQLite and on PostgreSQL."""
    return seeded_copy


def test_ask_json_answers_with_attribution(data_dir):
    done = run(["ask", "--json", "why did Iran strike?"], data_dir)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["answered"] is True and len(answer["results"]) == 3
    top3 = answer["results"]
    wanted = [r for r in top3 if "reinforce its internal security" in r["text"] or "Gregory Brew" in r["text"]]
    assert wanted and wanted[0]["speakers"], "the answering passage names who said it"
    assert all(r["source"] == "Agencies Via Xinhua" for r in wanted)


def test_ask_questions_file_answers_each_line_in_one_process(data_dir, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "a", "question": "why did Iran strike Pakistan?"}\n'
                         '{"id": "b", "question": "   "}\n'
                         'not json\n'
                         '{"id": "c", "question": "who founded the FIRST Global robotics competition?"}\n')
    done = run(["ask", "--questions", str(questions), "-k", "3"], data_dir)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line.get("id") for line in lines] == ["a", "b", None, "c"]
    assert lines[0]["answered"] and len(lines[0]["results"]) == 3
    assert "error" in lines[1] and "error" in lines[2]
    assert any("Dean Kamen" in r["text"] for r in lines[3]["results"])


def test_chat_json_follows_up(data_dir):
    messages = "what's behind iran's strikes, according to analysts?\nwho said that?\nmore\nwhat happened next?\n\n"
    done = run(["chat", "--json"], data_dir, stdin=messages)
    assert done.returncode == 0, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["kind"] for r in replies[:3]] == ["answer", "attribution", "more"]
    assert replies[1]["results"][0]["text"] == replies[0]["results"][0]["text"]
    assert replies[-1]["kind"] == "error", "an empty line gets a friendly message, not a crash"


def test_bad_input_gives_clear_messages_and_keeps_what_is_stored(data_dir, tmp_path):
    before = json.loads(run(["status", "--json"], data_dir).stdout)
    long_question = run(["ask", "x" * 10_000], data_dir)
    assert long_question.returncode == 2 and "characters" in long_question.stderr
    assert "Traceback" not in long_question.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run(["ingest", str(empty)], data_dir)
    assert nothing.returncode == 1 and "no files" in nothing.stderr
    binary = tmp_path / "junk.txt"
    binary.write_bytes(os.urandom(4096))
    junk = run(["ingest", "-q", str(binary)], data_dir)
    assert junk.returncode == 1 and "junk.txt" in junk.stderr and "Traceback" not in junk.stderr
    after = json.loads(run(["status", "--json"], data_dir).stdout)
    assert (after["articles"], after["passages"], after["consistent"]) == (before["articles"], before["passages"], True)


def test_attribute_reads_jsonl_and_writes_speakers(tmp_path):
    lines = ('{"id": "1", "text": "Gregory Brew, an analyst at Eurasia Group, said the strikes were motivated '
             'by security concerns."}\n{"id": "2", "text": "The sun rose."}\n')
    done = run(["attribute", "--json"], tmp_path / "d", stdin=lines)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert out[0]["speakers"][0]["name"] == "Gregory Brew"
    assert out[0]["speakers"][0]["description"] == "an analyst at Eurasia Group"
    assert out[1] == {"id": "2", "speakers": []}


def test_run_without_token_explains_how_to_get_one(tmp_path):
    done = run(["run"], tmp_path / "d")
    assert done.returncode == 2
    assert "BotFather" in done.stderr and "briefbot chat" in done.stderr
