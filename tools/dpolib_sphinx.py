"""Sphinx extension for the book (loaded from _config.yml, ``sphinx.local_extensions``).

1. The ``dpolib-environment`` directive, used on the status page::

       ```{dpolib-environment}
       ```

   It renders a table of the environment this build ran in: Python, dpolib, torch,
   the device, and the scale profile the chapters picked (``dpolib.profile``). The
   chapters are executed by a kernel of the same interpreter, so this is their
   environment too (a chapter taken from the execution cache keeps the
   environment it ran in; its own set-up cell prints that). Library versions are
   read from the installed distributions' metadata: nothing heavy is imported.

2. The ``dpolib-exec-table`` directive, also on the status page: for every
   executed chapter, whether this build executed it or reused outputs made earlier
   (from the execution cache, or from an earlier build's saved state), with the time
   that execution took and when it happened. "Executed in this build" means the
   execution's timestamp is later than this build's start.

3. Gated solutions in the student build. sphinx-exercise 1.2.1 drops a
   ``{solution-start}`` under ``hide_solutions`` but keeps its ``{solution-end}``,
   which crashes the HTML writer and would leave the solution's code cells in the
   page. Here ``{solution-start}`` leaves a marker instead, and a transform removes
   everything from the marker to the matching ``{solution-end}``.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shutil
import time

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)


class EnvironmentTable(SphinxDirective):
    """The ``dpolib-environment`` directive: a two-column table of the build environment."""

    has_content = False

    def run(self):
        self.env.dpolib_environment_docs = getattr(self.env, "dpolib_environment_docs", set()) | {self.env.docname}
        rows = [("Python", f"{platform.python_version()} ({platform.system()} {platform.machine()})")]
        rows += [(name, distribution_version(name)) for name in DISTRIBUTIONS]
        gpu = has_nvidia_gpu()
        requested = os.environ.get("DPOLIB_PROFILE", "")
        rows.append(("device", "an NVIDIA GPU (nvidia-smi found)" if gpu else "cpu"))
        rows.append(("scale profile", f"{requested or ('gpu' if gpu else 'cpu')} "
                                      f"(DPOLIB_PROFILE={requested or 'unset'})"))

        table = nodes.table(classes=["dpolib-environment"])
        group = nodes.tgroup(cols=2)
        table += group
        group += nodes.colspec(colwidth=1)
        group += nodes.colspec(colwidth=3)
        head = nodes.thead()
        group += head
        head += self._row("component", "version")
        body = nodes.tbody()
        group += body
        for name, value in rows:
            body += self._row(name, value)
        return [table]

    @staticmethod
    def _row(*cells):
        row = nodes.row()
        for text in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=str(text))
            row += entry
        return row


#: The distributions whose versions the status page shows (read from their metadata, never imported).
DISTRIBUTIONS = ("dpolib", "torch", "transformers", "trl", "datasets", "jupyter-book", "sphinx", "myst-nb")


def distribution_version(name: str) -> str:
    """The installed version of a distribution, from its metadata (the package is not imported)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def has_nvidia_gpu() -> bool:
    """A CUDA device is present (``nvidia-smi`` on the PATH or an NVIDIA driver loaded), without importing torch."""
    return shutil.which("nvidia-smi") is not None or os.path.exists("/proc/driver/nvidia/version")


class exec_table_placeholder(nodes.General, nodes.Element):
    """Where the ``dpolib-exec-table`` goes; filled after every chapter has been read."""


class ExecTable(SphinxDirective):
    """The ``dpolib-exec-table`` directive: how each executed chapter of this build was produced."""

    has_content = False

    def run(self):
        self.env.dpolib_environment_docs = getattr(self.env, "dpolib_environment_docs", set()) | {self.env.docname}
        return [exec_table_placeholder()]


def exec_rows(doc_data: dict, build_start: float) -> list[tuple[str, str, str, str]]:
    """``(chapter, how it was produced, execution time, executed at)`` for every document with execution data.

    A chapter counts as executed in this build when its execution's timestamp is not earlier than
    ``build_start``; otherwise its outputs were reused (myst-nb then reports the time of the
    execution that made them).
    """
    rows = []
    for docname in sorted(doc_data):
        data = doc_data[docname].get("exec_data")
        if not data:
            continue
        mtime = data.get("mtime")
        fresh = mtime is not None and mtime >= build_start
        how = "executed in this build" if fresh else "reused (outputs of an earlier execution)"
        if data.get("succeeded") is False:
            how = f"FAILED ({data.get('error')})"
        runtime = "-" if data.get("runtime") is None else f"{data['runtime']:.1f} s"
        when = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if mtime else "-"
        rows.append((docname, how, runtime, when))
    return rows


class FillExecTable(SphinxPostTransform):
    """Replace each placeholder with the table of :func:`exec_rows` (run while writing, when all data is in)."""

    default_priority = 8

    def run(self, **kwargs):
        from myst_nb.sphinx_ import NbMetadataCollector

        for node in list(self.document.findall(exec_table_placeholder)):
            rows = exec_rows(NbMetadataCollector.get_doc_data(self.env), self.app.dpolib_build_start)
            node.replace_self(_table(("chapter", "how it was produced", "execution time", "executed at"), rows))


def _table(header, rows) -> nodes.table:
    table = nodes.table(classes=["dpolib-exec-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    head += EnvironmentTable._row(*header)
    body = nodes.tbody()
    group += body
    for row in rows:
        body += EnvironmentTable._row(*row)
    return table


class hidden_solution_marker(nodes.Element):
    """Where a ``{solution-start}`` stood in a build with ``hide_solutions``; removed before writing."""


def _gated_solution_start():
    from sphinx_exercise.directive import SolutionStartDirective

    class HidingSolutionStart(SolutionStartDirective):
        def run(self):
            result = super().run()
            if self.env.app.config.hide_solutions:
                return [hidden_solution_marker()]
            return result

    return HidingSolutionStart


class StripGatedSolutions(SphinxTransform):
    """With ``hide_solutions``: remove each gated solution, from its start marker to its ``{solution-end}``."""

    default_priority = 5  # before sphinx-exercise merges gated solutions (10)

    def apply(self):
        if not self.config.hide_solutions:
            return
        from sphinx_exercise.nodes import solution_end_node

        for marker in list(self.document.findall(hidden_solution_marker)):
            parent = marker.parent
            start = parent.index(marker)
            end = next((i for i in range(start, len(parent)) if isinstance(parent[i], solution_end_node)), None)
            if end is None:
                logger.warning("solution-start without a solution-end at the same level", location=marker)
                parent.remove(marker)
                continue
            for child in list(parent.children[start : end + 1]):
                parent.remove(child)


def _always_reread(app, env, added, changed, removed):
    """Pages with the environment table are re-read on every build, so the table is never stale."""
    return sorted(getattr(env, "dpolib_environment_docs", set()) - set(removed))


def _merge(app, env, docnames, other):
    env.dpolib_environment_docs = getattr(env, "dpolib_environment_docs", set()) | getattr(other, "dpolib_environment_docs", set())


def build_start(now: float | None = None) -> float:
    """When this build started: ``$DPOLIB_BUILD_START`` (set by ``tools/book.sh`` before it executes chapters in
    parallel, ahead of Sphinx) if it is earlier than now, else now."""
    now = time.time() if now is None else now
    try:
        return min(now, float(os.environ["DPOLIB_BUILD_START"]))
    except (KeyError, ValueError):
        return now


def setup(app):
    app.dpolib_build_start = build_start()
    app.add_directive("dpolib-environment", EnvironmentTable)
    app.add_node(exec_table_placeholder)
    app.add_directive("dpolib-exec-table", ExecTable)
    app.add_post_transform(FillExecTable)
    app.add_node(hidden_solution_marker)
    app.add_directive("solution-start", _gated_solution_start(), override=True)
    app.add_transform(StripGatedSolutions)
    app.connect("env-get-outdated", _always_reread)
    app.connect("env-merge-info", _merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
