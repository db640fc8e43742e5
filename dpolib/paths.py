"""Where things live: every root and cache folder of dpolib, in one place.

Two kinds of folder:

* **results** (committed, read by the book): ``results_root()`` holds the experiment
  records (``<profile>/<key>.json``), the world reports and each profile's measured
  compatibility; ``benchmarks_root()`` the benchmark records.
* **caches** (rebuildable, never committed): ``cache_root()`` holds reference log-prob
  caches, the CPU world's trained models and samples (``world_cache()``), saved policies
  (``policy_cache()``) and trainer scratch folders (``trainer_scratch()``).

Environment variables override them: ``DPOLIB_RECORDS`` (a folder that replaces
``<repo>/results`` for records: the experiment records, world reports and benchmark
records are read and written there) and ``DPOLIB_CACHE`` (default ``~/.cache/dpolib``).
The figures a chapter saves go to :func:`dpolib.profile.output_dir` (``DPOLIB_RESULTS``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "results_root",
    "benchmarks_root",
    "world_report_path",
    "compatibility_path",
    "cache_root",
    "world_cache",
    "policy_cache",
    "trainer_scratch",
]

#: The checkout this package was imported from (meaningful only for an editable install or a clone).
#:
#: :meta hide-value:
REPO_ROOT = Path(__file__).resolve().parents[1]


def _results_base() -> Path:
    override = os.environ.get("DPOLIB_RECORDS")
    return Path(override) if override else REPO_ROOT / "results"


def results_root() -> Path:
    """The experiment records: ``$DPOLIB_RECORDS/lab`` or ``<repo>/results/lab``."""
    return _results_base() / "lab"


def world_report_path(profile: str, root: Path | None = None) -> Path:
    """The world report of a CPU-world profile: ``<records>/world_report_<profile>.json``."""
    return Path(root or results_root()) / f"world_report_{profile}.json"


def compatibility_path(profile: str, root: Path | None = None) -> Path:
    """The measured compatibility of a profile's students and references: ``<records>/<profile>/compatibility.json``."""
    return Path(root or results_root()) / profile / "compatibility.json"


def benchmarks_root() -> Path:
    """The benchmark records: ``$DPOLIB_RECORDS/benchmarks`` or ``<repo>/results/benchmarks``."""
    return _results_base() / "benchmarks"


def cache_root() -> Path:
    """``$DPOLIB_CACHE`` (when set and not empty) or ``~/.cache/dpolib``: everything that can be rebuilt."""
    return Path(os.environ.get("DPOLIB_CACHE") or Path.home() / ".cache" / "dpolib")


def world_cache() -> Path:
    """The CPU world's trained models, tokenizers and sampled candidates."""
    return cache_root() / "lab"


def policy_cache(profile: str) -> Path:
    """Trained policies kept for later runs (Appendix E's reference is RQ1's best policy)."""
    return cache_root() / "lab" / "policies" / profile


def trainer_scratch() -> Path:
    """``output_dir`` of the TRL trainers (nothing in it is read back)."""
    return cache_root() / "lab" / "trainer_out"
