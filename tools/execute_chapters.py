#!/usr/bin/env python3
"""Execute every chapter that the book's execution cache lacks, in parallel, before the book is built.

Jupyter Book executes chapters one after another while it reads them; on 2 cores half the
machine then waits. This script fills the same cache (``_build/.jupyter_cache``, which
``tools/book.sh`` then reads) with jupyter-cache's parallel executor, one process per core:
each chapter runs in ``notebooks/`` with the build's own kernel, exactly as the build would run
it, and the build then finds every chapter cached. Chapters already cached are skipped, and a
chapter that fails is reported here and executed again by the build, whose error fails it.
As in ``tools/book.sh``, the chapters run with ``TQDM_DISABLE=1`` and ``DPOLIB_BOOK_BUILD=1``
(no progress bars, and :func:`dpolib.profile.quiet_book_build` ignores the third-party import
warnings a rendered page should not show) unless the caller set them.

Usage::

    .venv/bin/python tools/execute_chapters.py [--cache _build/.jupyter_cache] [--timeout 600]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: How the build reads a chapter (myst-nb's reader), so that the cache keys match the build's.
READER = {"name": "myst_nb_md", "type": "plugin"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=str(ROOT / "_build" / ".jupyter_cache"))
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)

    for name in ("TQDM_DISABLE", "DPOLIB_BOOK_BUILD"):  # the kernels inherit this environment
        os.environ.setdefault(name, "1")
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    cache = get_cache(args.cache)
    chapters = sorted(str(p.resolve()) for p in (ROOT / "notebooks").glob("*.md"))
    for chapter in chapters:
        cache.add_nb_to_project(chapter, read_data=READER)
    stale = [r.uri for r in cache.list_project_records() if r.uri in chapters and cache.get_cached_project_nb(r.uri) is None]
    if not stale:
        print("[execute] every chapter is cached")
        return 0
    logger = logging.getLogger("execute_chapters")
    logging.basicConfig(level=logging.WARNING, format="[execute] %(message)s")
    start = time.perf_counter()
    result = load_executor("local-parallel", cache=cache, logger=logger).run_and_cache(
        filter_uris=stale, timeout=args.timeout, allow_errors=False)
    failed = [Path(uri).name for uri in result.errored]
    print(f"[execute] {len(result.succeeded)} chapter(s) executed in parallel in {time.perf_counter() - start:.0f} s"
          + (f"; failed (the build runs them again and reports the error): {', '.join(failed)}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
