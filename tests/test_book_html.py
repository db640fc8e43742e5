"""The rendered book shows no stderr, warnings, progress bars, machine paths or empty output boxes.

The checker (``tools/check_html.py``) is tested on small pages written in myst-nb's markup:
a clean page passes, and each kind of leak is caught. Then it runs over the built book
(``_build/html``) when one is present. The book-build settings that keep the pages clean
(``dpolib.profile.quiet_book_build`` and ``progress_enabled``) are tested here too.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

from dpolib import profile

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_html", ROOT / "tools" / "check_html.py")
check_html = importlib.util.module_from_spec(_spec)
sys.modules["check_html"] = check_html  # dataclasses look their module up by name
_spec.loader.exec_module(check_html)


def page(*outputs: str, prose: str = "<p>The best β is 0.1.</p>") -> str:
    """A chapter page in myst-nb's markup: the prose, then one code cell per output."""
    cells = "".join(
        '<div class="cell docutils container"><div class="cell_input docutils container">'
        '<div class="highlight-ipython3 notranslate"><div class="highlight"><pre><span></span>'
        '<span class="n">show</span>()</pre></div></div></div>'
        f'<div class="cell_output docutils container">{output}</div></div>\n'
        for output in outputs)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8" /><style>body {{ margin: 0 }}</style>'
            f'<script>var path = "/work/main/x";</script></head><body><main><section>{prose}{cells}'
            '</section></main></body></html>')


def stream(text: str, name: str = "stream") -> str:
    return (f'<div class="output {name} highlight-myst-ansi notranslate"><div class="highlight">'
            f'<pre><span></span>{text}</pre></div></div>')


TABLE = ('<div class="output text_html"><style type="text/css">#T_1 th { text-align: left; }</style>'
         '<table id="T_1"><thead><tr><th>student</th><th>β</th></tr></thead>'
         '<tbody><tr><td>char</td><td>0.1</td></tr></tbody></table></div>')
FIGURE = ('<figure class="align-default"><img alt="../_images/a.png" src="../_images/a.png" />'
          '<figcaption><p>LC win rate against β.</p></figcaption></figure>')
CLEAN = page(stream("14 records at profile &#39;cpu&#39;; students: char, bpe\n"), TABLE, FIGURE,
             prose='<p>Glued: <span class="pasted-text">0.1</span>. A <code>FutureWarning</code> is named in prose; '
                   'see <a href="https://example.org/home/tmp/">the docs</a>.</p>')


def kinds(html: str) -> list[str]:
    return [finding.kind for finding in check_html.check_page(html, "chapter.html")]


def test_clean_page_passes():
    assert check_html.check_page(CLEAN, "chapter.html") == []


@pytest.mark.parametrize("html, kind", [
    (page(stream("/work/main/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found",
                 "stderr")), "stderr"),
    (page(stream("Oops", "traceback")), "stderr"),
    (page(stream("FutureWarning: `gradient_checkpointing` is deprecated")), "warning"),
    (page(stream("TqdmExperimentalWarning: Using `tqdm.autonotebook.tqdm` in notebook mode")), "warning"),
    (page(stream("x.py:3: UserWarning: careful\n  warnings.warn(&#39;careful&#39;)")), "warning"),
    (page(stream("grid rq1 (cpu): 0it [00:00, ?it/s]")), "progress"),
    (page(stream("sweep K=4:  40%|████      | 4/10 [00:02&lt;00:03, 1.97it/s]")), "progress"),
    (page(stream("records in /tmp/clean-rec/results")), "path"),
    (page(stream("read C:/x and /home/alice/book")), "path"),
    (page(prose="<p>dpolib.paths.REPO_ROOT = PosixPath('/root/book')</p>"), "path"),
    (page(FIGURE.replace("../_images/a.png", "file:///work/main/_build/a.png")), "path"),
    (page('<div class="output text_plain highlight-myst-ansi notranslate"><div class="highlight"><pre><span></span>'
          '{&#39;lib&#39;: &#39;site-packages&#39;}</pre></div></div>'), "path"),
    (page(stream("\n")), "empty"),
    (page(""), "empty"),
    (page('<script type="application/vnd.jupyter.widget-view+json">{"model_id": "ab12"}</script>'), "empty"),
])
def test_each_leak_is_caught(html, kind):
    assert kind in kinds(html)


def test_findings_name_the_page_and_quote_the_leak():
    findings = check_html.check_page(page(stream("grid rq1 (cpu): 0it [00:00, ?it/s]")), "notebooks/rq1_beta.html")
    assert findings == [check_html.Finding("notebooks/rq1_beta.html", "progress", "grid rq1 (cpu): 0it [00:00, ?it/s]")]


def test_a_leak_is_reported_once_and_an_empty_box_beside_a_table_is_found():
    warning = stream("x.py:3: UserWarning: careful")
    assert kinds(page(warning)) == ["warning"]  # the stream and its cell_output read the same text
    assert kinds(page(stream("") + TABLE)) == ["empty"]
    assert kinds(page(stream("a stray /tmp/x and /tmp/y on one line"))) == ["path"]


def test_build_without_book_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no built book"):
        check_html.check_build(tmp_path)
    assert check_html.main([str(tmp_path)]) == 2


def test_build_is_checked_page_by_page(tmp_path, capsys):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "_sources").mkdir()
    (tmp_path / "index.html").write_text(CLEAN, encoding="utf-8")
    (tmp_path / "_sources" / "copied.html").write_text(page(stream("/tmp/x", "stderr")), encoding="utf-8")
    assert check_html.main([str(tmp_path)]) == 0
    (tmp_path / "notebooks" / "rq1_beta.html").write_text(page(stream("0it [00:00, ?it/s]")), encoding="utf-8")
    assert check_html.check_build(tmp_path) == [
        check_html.Finding("notebooks/rq1_beta.html", "progress", "0it [00:00, ?it/s]")]
    assert check_html.main([str(tmp_path)]) == 1
    assert "notebooks/rq1_beta.html:\n  progress: 0it [00:00, ?it/s]" in capsys.readouterr().err


@pytest.mark.parametrize("html_root", [ROOT / "_build" / "html", ROOT / "_build" / "student" / "_build" / "html"],
                         ids=["reader", "student"])
def test_built_book_is_clean(html_root):
    if not (html_root / "index.html").is_file():
        pytest.skip(f"no built book at {html_root.relative_to(ROOT)} (tools/book.sh builds it)")
    findings = check_html.check_build(html_root)
    assert not findings, "\n" + check_html.format_findings(findings)


def test_book_build_ignores_only_the_listed_third_party_warnings():
    from tqdm.std import TqdmExperimentalWarning, TqdmWarning

    def raised(message, category, module):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            profile.quiet_book_build()
            warnings.warn_explicit(message, category, "x.py", 1, module=module)
        return len(caught)

    assert raised("IProgress not found. Please update jupyter and ipywidgets.", TqdmWarning, "tqdm.auto") == 0
    assert raised("Using `tqdm.autonotebook.tqdm` in notebook mode.", TqdmExperimentalWarning, "datasets.utils") == 0
    assert raised("`gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning,
                  "transformers.training_args") == 0
    # the same categories with another message or module, and dpolib's own warnings, still show
    assert raised("IProgress not found.", TqdmWarning, "dpolib.logprobs") == 1
    assert raised("`foo` is deprecated.", FutureWarning, "transformers.training_args") == 1
    assert raised("`gradient_checkpointing` is deprecated.", FutureWarning, "dpolib.trl_bridge") == 1
    assert raised("a β outside the grid", UserWarning, "dpolib.experiments.records") == 1


def test_progress_bars_follow_tqdm_disable(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert profile.progress_enabled() and not profile.progress_enabled(False)
    for value, shown in (("1", False), ("true", False), ("0", True), ("false", True)):
        monkeypatch.setenv("TQDM_DISABLE", value)
        assert profile.progress_enabled(True) is shown
