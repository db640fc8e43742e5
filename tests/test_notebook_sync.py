"""Executable chapters and their Colab copies stay in sync (tools/sync_notebooks.py)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
import yaml

import dpolib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import sync_notebooks  # noqa: E402

CHAPTERS = sync_notebooks.chapters()


def test_every_chapter_and_its_ipynb_are_in_sync():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sync_notebooks.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_setup_cell_pins_the_repository_and_version_set_once():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    source = sync_notebooks.setup_cell_source()
    assert f'os.environ.get("DPOLIB_BOOK_SOURCE", "{config["repository"]["url"]}")' in source
    assert f'os.environ.get("DPOLIB_BOOK_REF", "v{dpolib.__version__}")' in source
    assert "profile.detect()" in source and "print(profile.describe(PROFILE))" in source


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_ipynb_has_no_outputs_and_starts_with_the_setup_cell(md):
    nb = json.loads(md.with_suffix(".ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "".join(code[0]["source"]) == sync_notebooks.setup_cell_source()
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_defines_no_library_code(md):
    """Chapters import from dpolib; functions and classes belong in the library."""
    nb = jupytext.read(md, fmt="md:myst")
    for cell in nb.cells:
        if cell.cell_type == "code":
            found = re.findall(r"^(?:def|class|async def) \w+", cell.source, flags=re.M)
            assert not found, f"{md.name} defines {found}: move it into dpolib and import it"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_in_the_table_of_contents(md):
    toc = (ROOT / "_toc.yml").read_text()
    assert f"file: notebooks/{md.stem}\n" in toc, f"{md.name} is not in _toc.yml, so the book would not build it"


def test_out_of_sync_is_detected_and_repaired(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "dpolib").mkdir()
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://example.org/x/y\n")
    (tmp_path / "dpolib" / "__init__.py").write_text('__version__ = "9.9.9"\n')
    md = tmp_path / "notebooks" / "ch.md"
    md.write_text(
        "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n  name: python3\n"
        "  display_name: Python 3\n  language: python\n---\n\n# Chapter\n\n```{code-cell} ipython3\nx = 1\n```\n"
    )
    assert sync_notebooks.sync(check=True, root=tmp_path) == [md, md.with_suffix(".ipynb")]
    sync_notebooks.sync(root=tmp_path)
    assert sync_notebooks.sync(check=True, root=tmp_path) == []
    text = md.read_text()
    assert '"https://example.org/x/y")' in text and '"v9.9.9")' in text and text.index("Set-up") < text.index("x = 1")
    md.write_text(text.replace("x = 1", "x = 2"))  # edit the .md, forget the .ipynb
    assert sync_notebooks.sync(check=True, root=tmp_path) == [md.with_suffix(".ipynb")]
