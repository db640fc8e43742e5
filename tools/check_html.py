#!/usr/bin/env python3
"""Check the built HTML book for leaks that a reader should never see.

A chapter's rendered outputs must show results only. This checker reads every page under
``_build/html`` (the book's chapters and its other pages) and reports, per page:

``stderr``
    a cell's stderr stream (myst-nb renders it as ``div.output.stderr``) or a traceback;
``warning``
    warning text in an output (``Warning:``, ``warnings.warn``, ``FutureWarning``, ``TqdmWarning``, ...);
``progress``
    progress-bar remnants in an output (``it/s]``, ``0it [``, ``%|``, ``█``);
``path``
    an absolute path of the build machine (``/work/``, ``/tmp/``, ``/home/``, ``/root/``,
    ``site-packages``) anywhere in a page's visible text or in a link or image address;
``empty``
    an output box with nothing visible in it (no text, image, table or figure), e.g. a
    progress widget that a static page cannot draw.

Warnings, progress bars, stderr and empty boxes are looked for in cell outputs and glued
values only (``div.cell_output``, ``div.output``, ``span.pasted-text``): the prose may
name a warning class. Machine paths are looked for everywhere, since no page should
carry one.

``tools/book.sh`` runs this after the strict build, so a leak fails the build;
``tests/test_book_html.py`` tests the checker and runs it over a built book.

Usage::

    .venv/bin/python tools/check_html.py [_build/html]   # exit 1 and list the findings; 0 when clean
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["KINDS", "Finding", "check_page", "pages", "check_build", "format_findings", "main"]

ROOT = Path(__file__).resolve().parent.parent

#: The kinds of finding, in the order they are reported.
KINDS = ("stderr", "warning", "progress", "path", "empty")

#: Warning text in an output.
WARNING_RE = re.compile(
    r"\w*Warning:|warnings\.warn|\b(?:TqdmWarning|TqdmExperimentalWarning|FutureWarning|DeprecationWarning"
    r"|PendingDeprecationWarning|UserWarning|RuntimeWarning)\b")
#: What tqdm leaves behind: ``12.3it/s]``, ``0it [00:00``, `` 40%|####``, block characters.
PROGRESS_RE = re.compile(r"(?:it|s)/(?:s|it)\]|\b\d+it \[|\d%\||[█▏▎▍▌▋▊▉]")
#: An absolute path of the build machine (not the path part of a web address: no word, dot or slash before it).
PATH_RE = re.compile(r"(?<![\w.:/~-])/(?:work|tmp|home|root)/|site-packages")
#: Elements whose content is never shown.
HIDDEN_TAGS = frozenset({"script", "style", "template", "noscript"})
#: Elements that show something without text.
MEDIA_TAGS = frozenset({"img", "svg", "video", "audio", "iframe", "canvas", "object", "embed", "table", "math"})
#: Elements with no end tag (never pushed on the open-element stack).
VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                       "track", "wbr"})
#: Page folders that are not pages of the book.
SKIPPED_DIRS = frozenset({"_static", "_sources", "_images"})
EXCERPT_CHARS = 160


@dataclass(frozen=True)
class Finding:
    """One leak: the page (relative to the HTML root), its kind (one of :data:`KINDS`) and the text around it."""

    page: str
    kind: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.excerpt}"


@dataclass
class _Output:
    """An output region being read: its classes, its visible text and whether it shows media."""

    classes: frozenset[str]
    text: list[str] = field(default_factory=list)
    media: bool = False
    empty_inside: bool = False  # an output region inside it was reported empty

    @property
    def visible(self) -> str:
        return " ".join("".join(self.text).split())


def _is_output(tag: str, classes: frozenset[str]) -> bool:
    if tag == "div":
        return "cell_output" in classes or "output" in classes
    return tag == "span" and "pasted-text" in classes


def _excerpt(text: str, match: re.Match) -> str:
    half = EXCERPT_CHARS // 2
    start, end = max(0, match.start() - half), min(len(text), match.end() + half)
    return ("…" if start else "") + text[start:end].strip() + ("…" if end < len(text) else "")


class _PageReader(HTMLParser):
    """Collects a page's findings while parsing it (see :func:`check_page`)."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.findings: list[Finding] = []
        self._open: list[tuple[str, _Output | None]] = []  # every open element; an output region where it is one
        self._hidden = 0  # depth inside script/style
        self._page_text: list[str] = []

    # -- parsing -------------------------------------------------------------------------------
    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if PATH_RE.search(value.removeprefix("file://")) and not value.startswith(("http://", "https://")):
                self._add("path", f'{tag} {name}="{value}"')
        if tag in MEDIA_TAGS:
            for _, region in self._open:
                if region is not None:
                    region.media = True
        if tag in VOID_TAGS:
            return
        classes = frozenset((attrs.get("class") or "").split())
        region = _Output(classes) if _is_output(tag, classes) else None
        self._open.append((tag, region))
        if tag in HIDDEN_TAGS:
            self._hidden += 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS and self._open and self._open[-1][0] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in VOID_TAGS or not any(name == tag for name, _ in self._open):
            return  # a stray end tag
        while self._open:
            name, region = self._open.pop()
            if name in HIDDEN_TAGS:
                self._hidden -= 1
            if region is not None:
                self._close_output(region)
            if name == tag:
                return

    def handle_data(self, data):
        if self._hidden:
            return
        self._page_text.append(data)
        for _, region in self._open:
            if region is not None:
                region.text.append(data)

    def close(self):
        super().close()
        while self._open:
            self.handle_endtag(self._open[-1][0])
        text = "".join(self._page_text)
        reported_until = -1
        for match in PATH_RE.finditer(text):
            if match.start() > reported_until:  # a path next to the last one reported is in its excerpt already
                self._add("path", " ".join(_excerpt(text, match).split()))
                reported_until = match.end() + EXCERPT_CHARS // 2

    # -- findings ------------------------------------------------------------------------------
    def _add(self, kind: str, excerpt: str):
        self.findings.append(Finding(self.page, kind, excerpt))

    def _close_output(self, region: _Output):
        text = region.visible
        if "stderr" in region.classes or "traceback" in region.classes:
            self._add("stderr", text[:EXCERPT_CHARS] or "(empty stderr output)")
        enclosing = next((r for _, r in reversed(self._open) if r is not None), None)
        if not text and not region.media:
            if not region.empty_inside:  # the inner empty box is the one reported
                self._add("empty", f"<{' '.join(sorted(region.classes))}> shows nothing")
            if enclosing is not None:
                enclosing.empty_inside = True
        if enclosing is not None:
            return  # the enclosing output region reads the same text: warnings and progress reported once
        for kind, pattern in (("warning", WARNING_RE), ("progress", PROGRESS_RE)):
            match = pattern.search(text)
            if match:
                self._add(kind, _excerpt(text, match))


def check_page(html: str, page: str = "<page>") -> list[Finding]:
    """The findings of one page's HTML, in the order they occur (machine paths in the text last).

    Args:
        html: the page's markup.
        page: the name the findings carry.
    """
    reader = _PageReader(page)
    reader.feed(html)
    reader.close()
    return reader.findings


def pages(html_root: Path) -> list[Path]:
    """The book's HTML pages under ``html_root`` (not Sphinx's static files or copied sources)."""
    return sorted(p for p in html_root.rglob("*.html") if not SKIPPED_DIRS & set(p.relative_to(html_root).parts))


def check_build(html_root: Path | str = ROOT / "_build" / "html") -> list[Finding]:
    """The findings of every page of a built book.

    Raises:
        FileNotFoundError: ``html_root`` holds no built book (no ``index.html``).
    """
    html_root = Path(html_root)
    if not (html_root / "index.html").is_file():
        raise FileNotFoundError(f"{html_root} holds no built book (no index.html); build it with tools/book.sh")
    findings = []
    for path in pages(html_root):
        findings += check_page(path.read_text(encoding="utf-8"), path.relative_to(html_root).as_posix())
    return findings


def format_findings(findings: list[Finding]) -> str:
    """The findings as lines grouped by page, with a count per kind at the end."""
    lines, page = [], None
    for finding in sorted(findings, key=lambda f: (f.page, KINDS.index(f.kind))):
        if finding.page != page:
            page = finding.page
            lines.append(f"{page}:")
        lines.append(f"  {finding.kind}: {finding.excerpt}")
    counts = ", ".join(f"{sum(f.kind == k for f in findings)} {k}" for k in KINDS if any(f.kind == k for f in findings))
    lines.append(f"{len(findings)} finding(s) on {len({f.page for f in findings})} page(s): {counts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html_root", nargs="?", default=str(ROOT / "_build" / "html"),
                        help="the built book's HTML folder (default: _build/html)")
    args = parser.parse_args(argv)
    try:
        findings = check_build(args.html_root)
    except FileNotFoundError as error:
        print(f"[check_html] {error}", file=sys.stderr)
        return 2
    if not findings:
        print(f"[check_html] {len(pages(Path(args.html_root)))} pages: no stderr, warnings, progress bars, "
              "machine paths or empty output boxes")
        return 0
    print("[check_html] the rendered book shows what a reader should not see:\n" + format_findings(findings),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
