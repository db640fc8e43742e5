"""The build status page tells the truth: a chapter executed in this build is labelled so, a reused one as reused.

A two-page book (one executable chapter, one status page with the book's own extension,
``tools/dpolib_sphinx.py``) is built cold, then warm, with Jupyter Book's cache as the real
book uses it; the status table must say "executed in this build" after the cold build and
"reused" after the warm one. The versions on the page are read without importing the libraries.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import dpolib_sphinx  # noqa: E402

NOTEBOOK = textwrap.dedent("""\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---

    # A chapter

    ```{code-cell} ipython3
    print(6 * 7)
    ```
    """)


def test_exec_rows_label_by_the_build_start():
    data = {
        "a": {"exec_data": {"mtime": 200.0, "runtime": 3.21, "succeeded": True}},
        "b": {"exec_data": {"mtime": 50.0, "runtime": 9.0, "succeeded": True}},
        "c": {},  # a page that was not executed
    }
    rows = dpolib_sphinx.exec_rows(data, build_start=100.0)
    assert [r[:3] for r in rows] == [("a", "executed in this build", "3.2 s"),
                                      ("b", "reused (outputs of an earlier execution)", "9.0 s")]


def test_build_start_includes_the_parallel_execution_before_sphinx(monkeypatch):
    monkeypatch.setenv("DPOLIB_BUILD_START", "100")
    assert dpolib_sphinx.build_start(now=250.0) == 100.0
    monkeypatch.setenv("DPOLIB_BUILD_START", "not a time")
    assert dpolib_sphinx.build_start(now=250.0) == 250.0
    monkeypatch.delenv("DPOLIB_BUILD_START")
    assert dpolib_sphinx.build_start(now=250.0) == 250.0


def test_versions_are_read_without_importing(monkeypatch):
    monkeypatch.delitem(sys.modules, "trl", raising=False)
    assert dpolib_sphinx.distribution_version("trl").startswith("1.16")
    assert dpolib_sphinx.distribution_version("no-such-distribution-xyz") == "not installed"
    assert "trl" not in sys.modules


def _status(html: Path) -> list[tuple[str, str]]:
    text = html.read_text()
    table = text[text.index("dpolib-exec-table"):]
    table = table[: table.index("</table>")]
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", table, flags=re.S)]
    return [(cells[i], cells[i + 1]) for i in range(0, len(cells), 4)]


def test_cold_then_warm_build_status(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text(textwrap.dedent(f"""\
        title: status test
        only_build_toc_files: true
        execute:
          execute_notebooks: cache
          timeout: 120
        sphinx:
          local_extensions:
            dpolib_sphinx: {ROOT / 'tools'}
          extra_extensions: [sphinx_exercise]
        """))
    (book / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters:\n  - file: chapter\n  - file: status\n")
    (book / "index.md").write_text("# Index\n")
    (book / "chapter.md").write_text(NOTEBOOK)
    (book / "status.md").write_text("# Status\n\n```{dpolib-exec-table}\n```\n\n```{dpolib-environment}\n```\n")
    jb = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(book), "-W", "-n"]

    def build():
        done = subprocess.run(jb, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return _status(book / "_build" / "html" / "status.html")

    assert build() == [("chapter", "executed in this build")]
    assert build() == [("chapter", "reused (outputs of an earlier execution)")]
    page = (book / "_build" / "html" / "status.html").read_text()
    assert "dpolib-environment" in page and "trl" in page
