"""The paper's tables as data (dpolib.paper): transcription checks against the paper's bold values and grids."""

import math

import matplotlib
import pytest

from dpolib import paper
from dpolib.paper import DEGENERATE

matplotlib.use("Agg")


def test_every_table_is_there_with_caption_and_source():
    assert list(paper.TABLES) == [f"table{i}" for i in range(1, 8)]
    for table in paper.TABLES.values():
        assert table.caption and table.metric and table.section
        assert "2407.13709" in table.citation


@pytest.mark.parametrize(
    "table, along, columns",
    [
        (paper.TABLE1, "column", None),
        (paper.TABLE3, "column", ["Score (LC)"]),  # the paper bolds only the score column
        (paper.TABLE4, "column", None),
        (paper.TABLE5, "row", None),  # best reference per student
        (paper.TABLE6, "column", None),
        (paper.TABLE7, "column", None),
    ],
    ids=lambda x: getattr(x, "key", None),
)
def test_best_values_are_the_papers_bold_values(table, along, columns):
    assert table.best(along=along, columns=columns) == table.bold


def test_bold_values_as_printed():
    bold = {key: sorted(table.cell(*c) for c in table.bold) for key, table in paper.TABLES.items()}
    assert bold == {
        "table1": [10.46, 16.25],
        "table2": [],
        "table3": [16.25],
        "table4": [7.85, 11.17, 15.37, 20.25],
        "table5": [11.17, 20.25],
        "table6": [5.89],
        "table7": [16.75],
    }


def test_beta_grids():
    assert paper.RQ1_BETAS == (0.1, 0.05, 0.02, 0.01, 0.005)
    assert paper.RQ3_BETAS == (10.0, 1.0, 0.1, 0.01, 0.005)
    assert paper.APP_B_BETAS == (0.1, 0.05, 0.02, 0.01, 0.005, 0.001)
    assert list(paper.TABLE1.sweep().index) == list(paper.RQ1_BETAS)
    assert list(paper.TABLE2.sweep().index) == list(paper.RQ1_BETAS)
    assert list(paper.TABLE4.sweep().index) == list(paper.RQ3_BETAS)
    assert list(paper.TABLE6.sweep().index) == list(paper.APP_B_BETAS)
    assert list(paper.TABLE7.sweep().index) == list(paper.APP_E_BETAS)
    assert {r.label: r.beta for r in paper.TABLE3.rows if r.role == "objective"} == {
        "DPO (Eq. 5)": 0.01,
        "probability (Eq. 10)": 100.0,
        "likelihood (Eq. 15)": 0.01,
    }


def test_degenerate_cells_are_a_marker_not_a_number():
    assert paper.TABLE1.degenerate == [("0.005", "tulu-2-7b")]
    assert paper.TABLE4.degenerate == [(b, "tulu-2-7b / ref mistral-v0.2") for b in ("0.1", "0.01", "0.005")]
    assert paper.TABLE6.degenerate == [("0.001", "qwen2-1.5b")]
    assert paper.TABLE1.cell("0.005", "tulu-2-7b") is DEGENERATE
    assert repr(DEGENERATE) == "[degenerate]"
    assert math.isnan(paper.TABLE1.frame().loc["0.005", "tulu-2-7b"])
    assert sum(len(t.degenerate) for t in paper.TABLES.values()) == 5
    html = paper.TABLE4.display().to_html()
    assert html.count("[degenerate]") == 3


def test_sft_baselines_and_cross_table_consistency():
    t1 = paper.TABLE1
    assert t1.baselines().loc["∞ (original)"].tolist() == [7.57, 8.50]
    assert [paper.MODELS[m]["lc"] for m in ("mistral-7b", "tulu-2-7b")] == [7.57, 8.50]
    # Table 5 summarises Tables 1 and 4: best over beta per reference
    for student in ("mistral-7b", "tulu-2-7b"):
        assert paper.TABLE5.cell(student, "original") == t1.cell("∞ (original)", student)
        assert paper.TABLE5.cell(student, "self") == t1.sweep()[student].max()
        for ref in ("mistral-v0.2", "llama3"):
            assert paper.TABLE5.cell(student, ref) == paper.TABLE4.sweep()[f"{student} / ref {ref}"].max()
    # Table 3's DPO row is Table 1's best mistral-7b cell; its SFT row is the SFT model
    assert paper.TABLE3.cell("DPO (Eq. 5)", "Score (LC)") == t1.cell("0.01", "mistral-7b")
    assert paper.TABLE3.cell("original (SFT)", "Score (LC)") == 7.57
    # the paper's own discrepancy, kept as printed
    assert paper.TABLE7.cell("reference (β = 0.01 DPO model)", "mistral-7b / ref DPO(β=0.01)") == 16.24


def test_policy_ranking_accuracy_rises_as_beta_falls():
    sweep = paper.TABLE2.sweep()
    for column in ("mistral-7b p_θ", "tulu-2-7b p_θ"):
        assert sweep[column].is_monotonic_increasing  # betas are listed largest first


def test_malformed_tables_are_refused():
    with pytest.raises(ValueError, match="2 cells for 1 columns"):
        paper.PaperTable("x", "X", "t", "c", "s", "m", "β", ("a",), (paper.PaperRow("r", (1.0, 2.0)),))
    with pytest.raises(KeyError, match="no row"):
        paper.PaperTable("x", "X", "t", "c", "s", "m", "β", ("a",), (paper.PaperRow("r", (1.0,)),), bold=frozenset({("q", "a")}))
    with pytest.raises(ValueError, match="no beta sweep"):
        paper.TABLE5.sweep()


def test_plot_sweep_draws_every_column_on_a_log_beta_axis():
    fig, ax = paper.plot_sweep(paper.TABLE4)
    assert ax.get_xscale() == "log"
    assert "win rate" in ax.get_ylabel()
    labels = [line.get_label() for line in ax.get_lines()]
    assert all(c in labels for c in paper.TABLE4.columns)
    fig, ax = paper.plot_sweep(paper.TABLE1, series={"mistral-7b": "dpo"})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "mistral-7b, before DPO (SFT)" in labels and "tulu-2-7b, degenerate (not scored)" in labels


def test_headline_findings_hold_on_the_papers_own_tables():
    findings = paper.headline_findings()
    assert list(findings.columns) == ["rq", "finding", "evidence", "holds"]
    assert set(findings["rq"]) == {"RQ1", "RQ2", "RQ3", "App. B", "App. E"}
    assert findings["holds"].all(), findings[~findings["holds"]]
    assert "16.25" in " ".join(findings["evidence"])


# Values quoted from the project's paper digest (shared/paper-digest.md, §3 "Tables and figures"),
# which transcribes arXiv 2407.13709v2; each is compared with what dpolib.paper holds.
DIGEST_TABLE3 = {  # "Table 3: training objectives compared on mistral-7b (best β each)": Score (LC), Accuracy, Length, β
    "original (SFT)": (7.57, 0.435, 205.0, None),
    "DPO (Eq. 5)": (16.25, 0.605, 359.4, 0.01),
    "probability (Eq. 10)": (12.84, 0.697, 744.5, 100.0),
    "likelihood (Eq. 15)": (13.63, 0.602, 389.3, 0.01),
}
DIGEST_TABLE5 = {  # "Table 5: best LC per reference": original, self, mistral-v0.2, llama3
    "mistral-7b": (7.57, 16.25, 20.25, 15.37),
    "tulu-2-7b": (8.50, 10.46, 7.85, 11.17),
}


def test_tables_3_and_5_match_the_digest():
    for label, (*cells, beta) in DIGEST_TABLE3.items():
        assert paper.TABLE3.row(label).values == tuple(cells), label
        assert paper.TABLE3.row(label).beta == beta, label
    assert paper.TABLE3.columns == ("Score (LC)", "Accuracy", "Length")
    assert paper.TABLE5.columns == ("original", "self", "mistral-v0.2", "llama3")
    for student, cells in DIGEST_TABLE5.items():
        assert paper.TABLE5.row(student).values == cells, student
    # a few cells of the tables they summarise ("Table 1", "Table 4" of the digest)
    assert paper.TABLE1.cell("0.01", "mistral-7b") == 16.25 and paper.TABLE1.cell("0.02", "tulu-2-7b") == 10.46
    assert paper.TABLE4.cell("1", "mistral-7b / ref mistral-v0.2") == 20.25
    assert paper.TABLE4.cell("0.01", "mistral-7b / ref llama3") == 15.37


# Paper numbers that chapters once typed into their text or code cells; they now read dpolib.paper
# (glue or computed text). Each pattern is narrow: the number as a whole token, or the phrase it sat in.
_NUMBER = r"(?<![\d.]){}(?!\d)"
TYPED_PAPER_NUMBERS = {
    "exact_world.md": [_NUMBER.format(v) for v in ("16\\.25", "12\\.84", "13\\.63", "20\\.25", "10\\.46", "7\\.85",
                                                   "15\\.37", "11\\.17", "8\\.50")],
    "practice.md": [_NUMBER.format(v) for v in ("16\\.25", "14\\.03", "10\\.46", "9\\.38", "12\\.36", "7\\.86", "20\\.25",
                                                "11\\.17", "7\\.85", "8\\.50", "205\\.0", "359\\.4", "744\\.5", "12\\.84")]
    + [r"\\beta = 100\$", r"\\beta = 1\.0\$"],
    "rq3_stronger_reference.md": [r"grows\s+to 1\.0", _NUMBER.format("0\\.67")],
    "rq1_beta.md": [r"was 0\.01 for `mistral-7b`", r"crosses 0\.5 at β = 0\.05", _NUMBER.format("0\\.704"),
                    _NUMBER.format("0\\.680")],
}


@pytest.mark.parametrize("chapter", sorted(TYPED_PAPER_NUMBERS))
def test_chapters_read_the_papers_numbers_from_dpolib_paper(chapter):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "notebooks" / chapter).read_text()
    typed = [pattern for pattern in TYPED_PAPER_NUMBERS[chapter] if re.search(pattern, text)]
    assert not typed, f"{chapter} types the paper's numbers {typed}: read them from dpolib.paper (glue) instead"


def test_the_typed_number_check_can_fail():
    import re

    assert re.search(TYPED_PAPER_NUMBERS["practice.md"][0], "reached 16.25 (Table 1)")
    assert not re.search(TYPED_PAPER_NUMBERS["practice.md"][0], "reached 116.25 or 16.255")


def _paper_cells() -> list[str]:
    """Every number of the paper's tables and model list as the paper prints it (values of two significant digits or
    fewer, such as 0.5, left out: they are also thresholds and grid points of our own)."""
    found = {f"{m['lc']:.2f}" for m in paper.MODELS.values()}
    for table in paper.TABLES.values():
        for row in table.rows:
            for column, value in zip(table.columns, row.values):
                if isinstance(value, float) and math.isfinite(value) and len(f"{value:g}".replace(".", "").lstrip("0")) > 2:
                    found.add(f"{value:.{table.decimals.get(column, 2)}f}")
    return sorted(found)


# Library modules and prose pages that once typed the paper's numbers: every table cell is checked, plus the phrases
# the numbers sat in. The paper's side is read from dpolib.paper (code), glued from an executed notebook (the
# introduction) or pointed to in the paper-results chapter (pure-markdown pages).
TYPED_ELSEWHERE = {
    "dpolib/chapters/practice.py": [r"205 → 359", r"\b745\b", r"2× longer"],
    "dpolib/chapters/rq1.py": [],
    "dpolib/chapters/rq2.py": [r"= 2\.07"],
    "dpolib/chapters/rq3.py": [],
    "dpolib/chapters/findings.py": [],
    "book/seminar.md": [r"43\.5%", r"was 1\.0, against 0\.01"],
    "book/reproduce_paper_scale.md": [r"`uniform` \(100\)", r"best at \$\\beta = 100\$"],
    "book/intro.md": [r"0\.01–0\.02", r"larger \(1\.0\)"],
}


@pytest.mark.parametrize("path", sorted(TYPED_ELSEWHERE))
def test_modules_and_pages_read_the_papers_numbers_from_dpolib_paper(path):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / path).read_text()
    patterns = [_NUMBER.format(re.escape(v)) for v in _paper_cells()] + TYPED_ELSEWHERE[path]
    typed = [p for p in patterns if re.search(p, text)]
    assert not typed, f"{path} types the paper's numbers {typed}: read them from dpolib.paper instead"


def test_the_paper_cells_check_can_fail():
    import re

    cells = _paper_cells()
    assert "16.25" in cells and "359.4" in cells and "0.435" in cells and "20.55" in cells
    assert "0.500" not in cells and "1.00" not in cells
    assert any(re.search(_NUMBER.format(re.escape(v)), "DPO 16.25 (Table 3)") for v in cells)
