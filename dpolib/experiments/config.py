"""What one run is: the typed :class:`RunConfig`, the profiles it can run at, and every grid in one table.

A run is the paper's pipeline (§3) for one student, one objective (= one reference,
§5) and one β. Its key is a hash of the config, the profile's settings and
:data:`PIPELINE_VERSION`; the record ``results/lab/<profile>/<key>.json`` is read back
instead of recomputed whenever it exists.

The paper's objectives map to references: ``dpo`` → the model reference named by
``reference`` (``self`` = the SFT student, ``compatible`` = a stronger model that shares
the student's tokenizer, ``incompatible`` = a stronger model of another family and
tokenizer, ``rq1-best`` = the student's best RQ1 DPO policy, Appendix E);
``probability`` → the uniform reference (Eq. 10); ``likelihood`` → the student's
prior p_LM(y) (Eq. 15); ``sft`` evaluates the SFT student untrained (the paper's
β = ∞ row, :attr:`RunConfig.beta_value`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

from ..provenance import stable_hash

__all__ = [
    "OBJECTIVES",
    "REFERENCES",
    "MODEL_REFERENCES",
    "PIPELINE_VERSION",
    "BETAS",
    "GRIDS",
    "PROFILES",
    "RunConfig",
    "profile_settings",
    "students",
    "SWEEP_GRIDS",
    "PAIRS",
    "sweep_grid",
]

OBJECTIVES = ("dpo", "probability", "likelihood", "sft")
#: References a ``dpo`` run can use (the other objectives imply theirs).
MODEL_REFERENCES = ("self", "compatible", "incompatible", "rq1-best")
REFERENCES = (*MODEL_REFERENCES, "uniform", "prior", "none")
_IMPLIED_REFERENCE = {"probability": "uniform", "likelihood": "prior", "sft": "none"}

#: Bump when the pipeline or :mod:`dpolib.experiments.metrics` changes what a record holds: every record key of
#: every profile (cpu world and gpu alike) changes with it, so stale records are recomputed, never mixed in.
PIPELINE_VERSION = "5"  # 5: World 4.1 (its data: the stacked sampler, one seed per source) and shared prefixes

#: The β grid of every arm, for every profile (the cpu world and the gpu profile sweep the same values).
BETAS: dict[str, tuple[float, ...]] = {
    # RQ1: DPO with the SFT reference; the paper's Table 1 grid plus App. B's 0.001 (Table 6), widened upwards to
    # RQ3's 10 and 1 so that RQ3 and App. E reuse these self-reference runs instead of training them again
    "rq1": (10.0, 1.0, 0.1, 0.05, 0.02, 0.01, 0.005, 0.001),
    # the on-policy diagnostic control (pairs from the student's own samples): never a headline
    "controls": (1.0, 0.1),
    # RQ2: the reference-free posterior-probability objective (Eq. 10) and the likelihood objective (Eq. 15)
    "rq2-probability": (100.0, 10.0, 1.0, 0.1, 0.01),
    "rq2-likelihood": (1.0, 0.1, 0.05, 0.02, 0.01, 0.005),
    # RQ3: DPO with the SFT, a compatible and an incompatible reference (the paper's Tables 4-5 grid)
    "rq3": (10.0, 1.0, 0.1, 0.01, 0.005),
    # Appendix E: the student's best RQ1 policy as the reference (the paper's Table 7 grid)
    "appendix-e": (10.0, 1.0, 0.1, 0.01, 0.005),
}

#: How a run's preference pairs were made, World 4's off-policy candidate pool or the student's own samples (the
#: on-policy diagnostic control; cpu world only).
PAIRS = ("pool", "on-policy")

#: The grids defined by β sweeps alone (:func:`sweep_grid`).
SWEEP_GRIDS = ("rq1", "rq2", "rq3", "appendix-e", "controls")
#: Every named grid, the sweeps and ``seeds`` (which reruns the headline arms chosen from them,
#: :func:`dpolib.experiments.records.grid`).
GRIDS = (*SWEEP_GRIDS, "seeds")

#: Every profile a run can name, the cpu world's sizes (:mod:`dpolib.world.profiles`) and ``gpu`` (:mod:`dpolib.hub`).
PROFILES = ("smoke", "cpu", "cpu-low-lr", "gpu")


def profile_settings(profile: str):
    """The settings object that keys a profile's records (a world :class:`~dpolib.world.profiles.Profile`, or the
    :class:`~dpolib.hub.profile.HubProfile` at ``gpu``). Raises ``ValueError`` naming the profiles for an unknown one."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if profile == "gpu":
        from ..hub.profile import GPU_PROFILE

        return GPU_PROFILE
    from ..world.profiles import get_profile

    return get_profile(profile)


def students(profile: str) -> tuple[str, ...]:
    """The students of a profile, the main one (RQ2's and Appendix E's) first."""
    if profile == "gpu":
        return (profile_settings("gpu").student,)
    profile_settings(profile)  # validates the name
    from ..world.families import FAMILIES

    return tuple(FAMILIES)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run. Frozen and hashable; with the profile's settings its hash keys the record.

    Attributes:
        profile: the scale profile (:data:`PROFILES`).
        student: the SFT student (a world family such as ``"char"``, or the gpu profile's student).
        objective: ``"dpo"`` (Eq. 5), ``"probability"`` (Eq. 10), ``"likelihood"`` (Eq. 15) or ``"sft"`` (untrained).
        reference: for ``dpo`` one of :data:`MODEL_REFERENCES`; implied by the other objectives
            (``uniform``, ``prior``, ``none``).
        beta: the KL strength β > 0; ``None`` for the SFT row (the paper's β = ∞).
        loss: the :data:`dpolib.losses.LOSSES` name (``"sigmoid"`` = DPO's Eq. 5).
        seed: the seed of DPO's data order and of generation; in the cpu world also the world seed (pretraining,
            SFT, siblings, candidate pool, annotator noise and prompts are all reseeded).
        pairs: ``"pool"`` (the off-policy preference data, as in the paper) or ``"on-policy"`` (the diagnostic
            control: pairs from the student's own samples, same annotator).
    """

    profile: str
    student: str
    objective: str = "dpo"
    reference: str = "self"
    beta: float | None = 0.1
    loss: str = "sigmoid"
    seed: int = 0
    pairs: str = "pool"

    def __post_init__(self):
        if self.pairs not in PAIRS:
            raise ValueError(f"pairs must be one of {PAIRS}, got {self.pairs!r}")
        if self.pairs == "on-policy" and (self.objective, self.reference) != ("dpo", "self"):
            raise ValueError("the on-policy control is DPO with the SFT reference (objective='dpo', reference='self')")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        implied = _IMPLIED_REFERENCE.get(self.objective)
        if implied and self.reference != implied:
            raise ValueError(f"objective {self.objective!r} implies reference {implied!r}, got {self.reference!r}")
        if self.objective == "dpo" and self.reference not in MODEL_REFERENCES:
            raise ValueError(f"a DPO run needs a model reference ({', '.join(MODEL_REFERENCES)}), got {self.reference!r}")
        if self.objective == "sft":
            if self.beta is not None:
                raise ValueError("the SFT row has no beta (the paper's beta = infinity); pass beta=None")
        elif self.beta is None or not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a finite number > 0, got {self.beta!r}")

    @property
    def beta_value(self) -> float:
        """β as a number, ``inf`` for the SFT row (no KL-regularised training at all)."""
        return math.inf if self.beta is None else float(self.beta)

    def key(self, settings=None) -> str:
        """The record key: a hash of this config, the profile's settings (default: the named profile's) and
        :data:`PIPELINE_VERSION`."""
        settings = settings if settings is not None else profile_settings(self.profile)
        return stable_hash({"config": asdict(self), "profile": settings.to_dict(), "pipeline": PIPELINE_VERSION})

    def label(self) -> str:
        beta = "inf" if self.beta is None else f"{self.beta:g}"
        tail = "" if self.pairs == "pool" else f"/pairs={self.pairs}"
        return f"{self.student}/{self.objective}/{self.reference}/beta={beta}/seed={self.seed}{tail}"

    def to_dict(self) -> dict:
        return asdict(self)


def sweep_grid(name: str, profile: str, seeds: Iterable[int] = (0,)) -> list[RunConfig]:
    """The runs of a named β-sweep grid at a profile, in a fixed order.

    ``rq1``: per student, the SFT row and DPO with the SFT reference over :data:`BETAS` ``["rq1"]``.
    ``rq2``: the main student's SFT row, RQ1's DPO runs, and the probability and likelihood objectives.
    ``rq3``: per student, DPO with the self, compatible and incompatible references (the self runs are RQ1's:
    the same configurations, hence the same records, trained once).
    ``appendix-e``: the main student with its best RQ1 policy as reference.
    ``controls``: per student, the on-policy diagnostic control (cpu world only).

    Raises ``ValueError`` naming the grids (or profiles) for an unknown one.
    """
    if name not in SWEEP_GRIDS:
        raise ValueError(f"unknown sweep grid {name!r}; choose one of {', '.join(SWEEP_GRIDS)}"
                         + (" (the seeds grid is dpolib.experiments.records.grid)" if name == "seeds" else ""))
    all_students = students(profile)
    main = all_students[0]
    configs: list[RunConfig] = []

    def sweep(student, objective, reference, arm, seed):
        return [RunConfig(profile, student, objective, reference, b, seed=seed) for b in BETAS[arm]]

    for seed in seeds:
        if name == "rq1":
            for s in all_students:
                configs.append(RunConfig(profile, s, "sft", "none", None, seed=seed))
                configs += sweep(s, "dpo", "self", "rq1", seed)
        elif name == "rq2":
            configs.append(RunConfig(profile, main, "sft", "none", None, seed=seed))
            configs += sweep(main, "dpo", "self", "rq1", seed)
            configs += sweep(main, "probability", "uniform", "rq2-probability", seed)
            configs += sweep(main, "likelihood", "prior", "rq2-likelihood", seed)
        elif name == "rq3":
            for s in all_students:
                for ref in ("self", "compatible", "incompatible"):
                    configs += sweep(s, "dpo", ref, "rq3", seed)
        elif name == "appendix-e":
            configs += sweep(main, "dpo", "rq1-best", "appendix-e", seed)
        elif name == "controls":
            if profile == "gpu":
                raise ValueError("the on-policy control is the cpu world's (the gpu profile has no grid 'controls')")
            for s in all_students:
                configs += [RunConfig(profile, s, "dpo", "self", b, seed=seed, pairs="on-policy")
                            for b in BETAS["controls"]]
    return configs
