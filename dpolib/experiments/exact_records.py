"""The records of the exact world and of the theory chapter's checks: their configs, keys, paths and the reader.

Two chapters compute nothing at build time: the exact world's sweeps
(``notebooks/exact_world.md``, the RQ1 chapter's dense curve) and the theory chapter's
checks (``notebooks/theory.md``: every identity simplified and evaluated at random points,
the sympy-versus-autograd comparison) are computed once by :mod:`dpolib.experiments.exact`
(``python -m dpolib.experiments exact``) and written as JSON records with provenance::

    results/exact/<key>.json     one record: every sweep and table of the exact world
    results/theory/<key>.json    one record: every check of the theory chapter

The key is a hash of the config (:class:`ExactConfig`, :class:`TheoryConfig`) and of the
code version (:data:`EXACT_VERSION`, :data:`THEORY_VERSION`), the way
:data:`dpolib.experiments.config.PIPELINE_VERSION` keys the lab's records: a changed config
or version changes the key, so an old record is never read for a new question. This module
only reads (it imports neither torch nor sympy), so chapters may use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..paths import results_root
from ..provenance import read_json, stable_hash

__all__ = [
    "EXACT_VERSION",
    "THEORY_VERSION",
    "ExactConfig",
    "TheoryConfig",
    "version_of",
    "record_key",
    "record_path",
    "is_current",
    "read",
    "WRITE_COMMAND",
]

#: Bump when :mod:`dpolib.tabular` (world, training, evaluation) or the exact-world writer changes
#: what a record holds: every exact-world record key changes with it.
EXACT_VERSION = "1"

#: Bump when :mod:`dpolib.symbolic`, :mod:`dpolib.symbolic_training`, :mod:`dpolib.losses` or the
#: theory writer changes what a record holds: every theory record key changes with it.
THEORY_VERSION = "1"

#: The command that writes both record sets (named in every "record missing" message).
WRITE_COMMAND = "python -m dpolib.experiments exact"


@dataclass(frozen=True)
class ExactConfig:
    """What the exact-world record computes (defaults: the book's chapter).

    Attributes:
        world: overrides of :class:`dpolib.tabular.WorldConfig` as ``((field, value), ...)`` (none: the book's world).
        steps: Adam steps per training run (:class:`dpolib.tabular.TrainConfig`).
        lr: peak learning rate.
        warmup: fraction of the steps spent warming up.
        n_betas: the dense β grid, ``n_betas`` values log-spaced in ``[beta_low, beta_high]``.
        beta_low: smallest β.
        beta_high: largest β.
        population_prompts: prompts of the small world on which infinite-data DPO is minimised.
        population_betas: β values of that check.
        strengths: ``((name, strength), ...)`` of the compatible references (each with a matched incompatible one).
        robustness_seeds: how many independently drawn worlds (seeds 0, 1, ...) the scorecard tallies.
        robustness_betas: the coarse β grid of the robustness table.
        budget_steps: the longer step budget of the "predict the curve" exercise.
        kappas: the length slopes κ of the "incompatibility that hurts" exercise.
    """

    world: tuple = ()
    steps: int = 300
    lr: float = 0.05
    warmup: float = 0.1
    n_betas: int = 40
    beta_low: float = 1e-3
    beta_high: float = 1e2
    population_prompts: int = 3
    population_betas: tuple = (0.1, 1.0, 10.0)
    strengths: tuple = (("weak", 0.5), ("strong", 2.0))
    robustness_seeds: int = 6
    robustness_betas: int = 20
    budget_steps: int = 1200
    kappas: tuple = (-3.0, 3.0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TheoryConfig:
    """What the theory record checks (defaults: the book's chapter).

    Attributes:
        identities: names in :data:`dpolib.symbolic_training.ALL` to check, in order (empty: all of them).
        points: random points of each identity's numeric check.
        seed: seed of those points.
        autograd_points: random points of the sympy-versus-``torch.autograd`` comparison of the DPO gradient.
        autograd_seed: seed of those points.
    """

    identities: tuple = ()
    points: int = 12
    seed: int = 0
    autograd_points: int = 200
    autograd_seed: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def _kind(config) -> str:
    if isinstance(config, ExactConfig):
        return "exact"
    if isinstance(config, TheoryConfig):
        return "theory"
    raise TypeError(f"expected an ExactConfig or a TheoryConfig, got {type(config).__name__}")


def version_of(config) -> str:
    """The code version that keys ``config``'s records (:data:`EXACT_VERSION` or :data:`THEORY_VERSION`)."""
    return EXACT_VERSION if _kind(config) == "exact" else THEORY_VERSION


def record_key(config) -> str:
    """The record's key: a stable hash of its kind, its config and its code version."""
    return stable_hash({"kind": _kind(config), "config": config.to_dict(), "version": version_of(config)})


def record_path(config, root: Path | None = None) -> Path:
    """``results/exact/<key>.json`` or ``results/theory/<key>.json`` (``root`` replaces ``results/``)."""
    base = Path(root) if root is not None else results_root().parent
    return base / _kind(config) / f"{record_key(config)}.json"


def is_current(record: dict, config) -> bool:
    """Whether a record answers ``config`` under the current code version (its stored key, version and config agree)."""
    return (
        record.get("key") == record_key(config)
        and record.get("version") == version_of(config)
        and record.get("config") == _jsonable(config.to_dict())
    )


def _jsonable(obj):
    """What ``obj`` becomes after a JSON round trip (tuples become lists)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def read(config, root: Path | None = None) -> dict:
    """The record for ``config`` (checksum verified).

    Raises:
        FileNotFoundError: no record for this config and code version; the message names the command that writes it.
        ValueError: the file's stored key, version or config does not match ``config`` (never read silently).
    """
    path = record_path(config, root)
    if not path.exists():
        raise FileNotFoundError(
            f"no {_kind(config)} record for this config and code version at {path}; write it with `{WRITE_COMMAND}`"
        )
    record = read_json(path)
    if not is_current(record, config):
        raise ValueError(f"{path} does not match its config or code version; rewrite it with `{WRITE_COMMAND} --force`")
    return record
