"""`python -m tests.crash_at POINT briefbot-args...`: run `briefbot` and SIGKILL it at a precise point.

Random delays find some crash windows; these find the named ones every time:

* ``parsing:N`` — after the Nth article is parsed (earlier batches may be committed, nothing saved to the index)
* ``after-commit`` — every article committed to the database, the index not yet saved
* ``mid-save:SUFFIX`` — the index file ending in SUFFIX written to its temporary file, not yet renamed into place
"""

from __future__ import annotations

import os
import signal
import sys


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    """Patch the process so it kills itself at `point`."""
    import bot.corpus

    if point.startswith("parsing:"):
        after = int(point.split(":", 1)[1])
        real_parse = bot.corpus.parse_path

        def parse_path(path):
            for number, item in enumerate(real_parse(path), start=1):
                yield item
                if number >= after:
                    die()

        bot.corpus.parse_path = parse_path
    elif point == "after-commit":
        bot.corpus.Corpus.save_index = lambda self: die()
    elif point.startswith("mid-save:"):
        suffix = point.split(":", 1)[1]
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if str(dst).endswith(suffix):
                die()
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace
    else:
        raise SystemExit(f"unknown crash point {point!r}")


if __name__ == "__main__":
    arm(sys.argv[1])
    from bot.cli import main

    sys.exit(main(sys.argv[2:]))
