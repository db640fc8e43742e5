"""A table of the paper as data: typed rows and cells, its caption and source, and how it is rendered.

:class:`PaperTable` holds one of the paper's tables (:mod:`dpolib.paper` has the numbers);
:data:`~dpolib.paper_table.DEGENERATE` marks the cells the paper prints as "[degenerate]".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["DEGENERATE", "Degenerate", "BASELINE_ROLES", "PaperRow", "PaperTable"]


class Degenerate:
    """The marker for a cell the paper prints as "[degenerate]" (no score: the model degenerated)."""

    _instance: "Degenerate | None" = None

    def __new__(cls):  # one shared instance, so ``cell is DEGENERATE`` works
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "[degenerate]"

    __str__ = __repr__

    def __reduce__(self):
        return (Degenerate, ())


#: The "[degenerate]" marker.
DEGENERATE = Degenerate()

#: beta grid of RQ1 (Tables 1 and 2), as printed (largest first).

#: Row roles that are reference points rather than results of the compared runs; never "best".
BASELINE_ROLES = frozenset({"sft", "previous", "reference"})


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table.

    Attributes:
        label: the row label as printed, e.g. ``"0.05"`` or ``"∞ (original)"``.
        values: one cell per column: a float or :data:`~dpolib.paper_table.DEGENERATE`.
        beta: the beta of the row, if it has one (``math.inf`` for the SFT model).
        role: ``"sweep"`` (a point of a beta sweep), ``"sft"`` (the model before DPO),
            ``"previous"`` (a model from earlier work), ``"reference"`` (the reference model
            itself), ``"objective"`` (one objective at its best beta) or ``"student"``.
    """

    label: str
    values: tuple
    beta: float | None = None
    role: str = "sweep"


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper, with its caption and where it comes from.

    Attributes:
        key: short name, e.g. ``"table1"``.
        number: as the paper numbers it, e.g. ``"Table 6 (App. B)"``.
        title: a one-line summary (ours).
        caption: the paper's caption, verbatim where ``caption_verbatim`` is true.
        section: the section of the paper the table belongs to.
        metric: what the numbers are, with units.
        row_header: the header of the row labels, e.g. ``"β"``.
        columns: column headers as printed.
        rows: the rows, in the paper's order.
        bold: ``(row label, column)`` cells the paper prints in bold (its best results).
        baseline_columns: columns that are reference points (e.g. the SFT model), never "best".
        decimals: digits after the point when displayed, per column (default 2).
        caption_verbatim: whether ``caption`` is the paper's own text.
        notes: remarks on the transcription (discrepancies, missing values).
    """

    key: str
    number: str
    title: str
    caption: str
    section: str
    metric: str
    row_header: str
    columns: tuple
    rows: tuple
    bold: frozenset = frozenset()
    baseline_columns: frozenset = frozenset()
    decimals: dict = field(default_factory=dict)
    caption_verbatim: bool = True
    notes: tuple = ()

    def __post_init__(self):
        for row in self.rows:
            if len(row.values) != len(self.columns):
                raise ValueError(f"{self.key}: row {row.label!r} has {len(row.values)} cells for {len(self.columns)} columns")
        labels = [row.label for row in self.rows]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{self.key}: duplicate row labels {labels}")
        for label, column in self.bold:
            self.cell(label, column)  # raises on a typo

    @property
    def citation(self) -> str:
        """Where the table comes from, for a figure or table caption."""
        return f"{self.number}, {self.section} of Liu, Liu & Cohan (2024), arXiv 2407.13709v2"

    def row(self, label: str) -> PaperRow:
        """The row with this label."""
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"{self.key} has no row {label!r}; rows: {[r.label for r in self.rows]}")

    def cell(self, label: str, column: str):
        """The cell at (row label, column): a float or :data:`~dpolib.paper_table.DEGENERATE`."""
        if column not in self.columns:
            raise KeyError(f"{self.key} has no column {column!r}; columns: {list(self.columns)}")
        return self.row(label).values[self.columns.index(column)]

    @property
    def degenerate(self) -> list[tuple[str, str]]:
        """``(row label, column)`` of every "[degenerate]" cell."""
        return [
            (row.label, column)
            for row in self.rows
            for column, value in zip(self.columns, row.values)
            if value is DEGENERATE
        ]

    def frame(self, with_beta: bool = False) -> pd.DataFrame:
        """All rows as a float DataFrame indexed by the printed row labels; degenerate cells are NaN.

        Args:
            with_beta: add a ``β`` column from the rows' beta (NaN where a row has none).
        """
        data = [[math.nan if v is DEGENERATE else float(v) for v in row.values] for row in self.rows]
        df = pd.DataFrame(data, columns=list(self.columns), index=pd.Index([r.label for r in self.rows], name=self.row_header))
        if with_beta:
            df.insert(len(df.columns), "β", [math.nan if r.beta is None else r.beta for r in self.rows])
        return df

    def sweep(self) -> pd.DataFrame:
        """Only the rows of the beta sweep, indexed by beta (float), in the paper's order."""
        rows = [r for r in self.rows if r.role == "sweep"]
        if not rows:
            raise ValueError(f"{self.key} ({self.number}) has no beta sweep")
        data = [[math.nan if v is DEGENERATE else float(v) for v in r.values] for r in rows]
        return pd.DataFrame(data, columns=list(self.columns), index=pd.Index([r.beta for r in rows], name="β"))

    def baselines(self) -> pd.DataFrame:
        """The reference-point rows (SFT model, previous work, the reference itself)."""
        return self.frame().loc[[r.label for r in self.rows if r.role in BASELINE_ROLES]]

    def best(self, along: str = "column", columns=None) -> frozenset:
        """The cells with the highest value, ignoring baselines and degenerate cells.

        Args:
            along: ``"column"`` (best row of each column) or ``"row"`` (best column of each row).
            columns: restrict to these columns (default: all non-baseline columns).

        Returns:
            ``(row label, column)`` pairs, comparable with the ``bold`` attribute.
        """
        columns = [c for c in (columns or self.columns) if c not in self.baseline_columns]
        rows = [r for r in self.rows if r.role not in BASELINE_ROLES]
        cells = {
            (r.label, c): r.values[self.columns.index(c)]
            for r in rows
            for c in columns
            if r.values[self.columns.index(c)] is not DEGENERATE
        }
        if along == "column":
            groups = {c: [(lab, col) for (lab, col) in cells if col == c] for c in columns}
        elif along == "row":
            groups = {r.label: [(lab, col) for (lab, col) in cells if lab == r.label] for r in rows}
        else:
            raise ValueError(f"along must be 'column' or 'row', got {along!r}")
        return frozenset(max(group, key=cells.__getitem__) for group in groups.values() if group)

    def display(self, with_beta: bool = False):
        """The table styled as in the paper: bold cells bold, "[degenerate]" spelled out.

        Returns a :class:`pandas.io.formats.style.Styler` (renders as HTML in a notebook).
        """
        df = self.frame(with_beta=with_beta)
        degenerate = set(self.degenerate)
        text = df.copy().astype(object)
        for label in df.index:
            for column in df.columns:
                value = df.loc[label, column]
                if (label, column) in degenerate:
                    text.loc[label, column] = "[degenerate]"
                elif math.isnan(value):
                    text.loc[label, column] = "–"
                elif column == "β":
                    text.loc[label, column] = f"{value:g}"
                else:
                    text.loc[label, column] = f"{value:.{self.decimals.get(column, 2)}f}"

        def weight(frame):
            return pd.DataFrame(
                [["font-weight: bold" if (label, column) in self.bold else "" for column in frame.columns] for label in frame.index],
                index=frame.index,
                columns=frame.columns,
            )

        caption_css = "caption-side: top; text-align: left; min-width: 32em; max-width: 48em; font-size: 0.9em"
        return (
            text.style.apply(weight, axis=None)
            .set_caption(f"{self.number}: {self.caption}")
            .set_table_styles([{"selector": "caption", "props": caption_css}])
        )
