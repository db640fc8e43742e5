"""The controlled world, documented: tables and figures of its world reports and of the worlds before it.

:func:`dpolib.world.report.write_world_report` writes ``results/lab/world_report_<profile>.json``
when a world is built: the models' parameter counts and training times (``stage_seconds``),
the SFT models' gold on held-out prompts (``sft_quality``), the preference data's lengths,
annotator agreement, filler rates and source mix (``preference_data``), and the log-prob
correlations between students and references (``compatibility``). This module reads such a
report (a plain dict) and turns each section into a ``pandas`` table or a figure, for the
controlled-world chapter.

Superseded worlds are kept under ``results/lab/archive/<name>/`` (their world report, their
run records under ``cpu/``, a README), ordered by their reports' build dates.
:func:`world_history` compares each world's RQ1 outcome (SFT against its best DPO run, self
reference) with what its preference data taught (filler rates of chosen and rejected
responses). Archived records are read file by file (:func:`read_archived_records`): their
keys were made by an older pipeline, so :func:`dpolib.experiments.records.load_grid` cannot
find them, and the oldest lack metric fields added since.

Nothing here trains or generates text. :func:`example_responses` and :func:`writer_table`
call the task's writers and gold scorer, which are pure Python (no results involved); the
annotator's length bias they add is the one the world report records (``report["annotator"]``).
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import fields
from pathlib import Path
from typing import Iterable, NamedTuple

import pandas as pd

from .. import paths
from ..experiments.config import RunConfig
from ..experiments.records import Metrics, Record, RecordError, best_record
from ..provenance import read_json
from ..world import task
from ..world.writers import SOURCE_POLICIES

__all__ = [
    "NOT_RUN_RECORDS",
    "MODELS",
    "WORLD_CHANGES",
    "LoadedReport",
    "load_report",
    "model_label",
    "example_responses",
    "writer_table",
    "annotator_mean",
    "families_table",
    "model_table",
    "stage_table",
    "sft_quality_table",
    "gold_by_kind",
    "plot_gold_by_kind",
    "preference_summary",
    "preference_lengths",
    "source_mix",
    "plot_source_mix",
    "compatibility_table",
    "ranking_accuracy_table",
    "read_archived_records",
    "rq1_outcome",
    "archived_worlds",
    "world_history",
    "dpo_wins",
]

#: Files of a profile's record folder that are not run records, the measured compatibility
#: (``dpolib.paths.compatibility_path``) and the learning-rate choices (``dpolib.experiments.lr_rule.lr_choice_path``).
NOT_RUN_RECORDS = ("compatibility.json", "lr_choice.json")

#: The four SFT models of a world report as ``"<family>/<size>"``, students first.
MODELS = ("char/small", "bpe/small", "char/large", "bpe/large")

#: What each world changed relative to the one before it (design facts, for the history table).
WORLD_CHANGES = {
    "world-2": "first cpu world: 7 programmatic writers; filler penalty 0.04",
    "world-3a": "+ 4 model-sampled sources (2 large SFT models, 2 peers); + 'thorough' writer "
    "(gold-neutral detail sentences); filler penalty 0.04 → 0.1",
    "world-3": "+ most SFT demonstrations open with a stock phrase (families' sft_mix)",
    "world-4": "World 4: sibling SFT models as most of the candidate pool; 3 world seeds; 2,000 test prompts, "
    "1,000 validation pairs; DPO learning rate chosen per student",
    "world-4.1a": "World 4.1's first run: the pool sampled with no top-k (world-4's sampler kept the top 50 tokens "
    "by Hugging Face's default)",
    "current": "World 4.1: World 4 rebuilt by issue 15's pipeline; one sampling seed per pool source (world-4's "
    "sources shared one); stacked sampler, top-k 50 stated; fused GELU",
}


class LoadedReport(NamedTuple):
    """A world report and where it came from.

    Attributes:
        report: the report dict (the JSON of :func:`dpolib.world.report.write_world_report`).
        profile: the profile whose report was read.
        requested: the profile that was asked for.
        note: why another profile's report was read, or ``None``.
    """

    report: dict
    profile: str
    requested: str
    note: str | None


def load_report(profile: str, root: Path | None = None, fallback: str = "cpu") -> LoadedReport:
    """The world report of ``profile``, or of ``fallback`` (with a note saying so) when it is missing.

    Raises:
        FileNotFoundError: neither report exists (build one with ``python -m dpolib.experiments world``).
    """
    for name in dict.fromkeys((profile, fallback)):
        path = paths.world_report_path(name, root)
        if path.exists():
            note = None
            if name != profile:
                note = (f"No world report for profile {profile!r} ({path.name.replace(name, profile)} is missing); "
                        f"showing the {name!r} world's report instead.")
            return LoadedReport(read_json(path), name, profile, note)
    raise FileNotFoundError(
        f"no world report for profile {profile!r} or {fallback!r} under {root or paths.results_root()}; "
        "build the world and write its report with dpolib.world.report.write_world_report(get_profile(...))"
    )


def model_label(key: str) -> str:
    """``"char/small"`` -> ``"char student"``, ``"bpe/large"`` -> ``"bpe large"``."""
    family, size = key.split("/")[:2]
    return f"{family} {'student' if size == 'small' else size}"


def _ordered_models(section: dict) -> list[str]:
    known = [m for m in MODELS if m in section]
    return known + sorted(m for m in section if m not in MODELS)


# --------------------------------------------------------------------------------------- the task language


def annotator_mean(prompt: task.TaskPrompt, response: str, annotator: dict) -> float:
    """The annotator's expected grade (:func:`dpolib.world.pairs.annotate` without its noise).

    ``gold + length_bias · min(len(response) / length_scale_chars, 2)``, with ``annotator`` the world
    report's ``annotator`` section (``length_bias``, ``length_scale_chars``).
    """
    bias, scale = annotator["length_bias"], annotator["length_scale_chars"]
    return task.gold_score(prompt, response) + bias * min(len(response) / scale, 2.0)


def example_responses(prompt: task.TaskPrompt, annotator: dict, seed: int = 0, openers=None) -> pd.DataFrame:
    """One response from each programmatic writer to ``prompt``, with its gold and expected annotator grade.

    Pure code: the writers of :data:`dpolib.world.writers.SOURCE_POLICIES`, each with its own
    deterministic random stream, and the gold scorer; ``annotator`` is the world report's
    ``annotator`` section (:func:`annotator_mean`). Columns: ``source``, ``response``,
    ``chars``, ``gold``, ``annotator (mean)``.
    """
    rows = []
    for name, writer in SOURCE_POLICIES.items():
        response = writer(prompt, random.Random(f"example/{prompt.text}/{name}/{seed}"), openers=openers)
        rows.append({"source": name, "response": response, "chars": len(response),
                     "gold": task.gold_score(prompt, response),
                     "annotator (mean)": annotator_mean(prompt, response, annotator)})
    return pd.DataFrame(rows)


def writer_table(annotator: dict, n_prompts: int = 500, seed: int = 0, split: str = "pref_train") -> pd.DataFrame:
    """Mean gold of each programmatic writer by task kind, its mean length and expected annotator grade.

    Computed live on ``n_prompts`` prompts of ``split`` (pure code, deterministic in ``seed``);
    ``annotator`` is the world report's ``annotator`` section (:func:`annotator_mean`).
    Index: the writers; columns: the kinds, ``all``, ``chars``, ``annotator (mean)``, ``filler rate``.
    """
    prompts = task.sample_prompts(n_prompts, split, seed=seed)
    rows = []
    for name, writer in SOURCE_POLICIES.items():
        rng = random.Random(f"writer-table/{name}/{seed}")
        responses = [writer(p, rng) for p in prompts]
        golds = [task.gold_score(p, r) for p, r in zip(prompts, responses)]
        row = {"source": name}
        for kind in task.KINDS:
            g = [x for p, x in zip(prompts, golds) if p.kind == kind]
            row[kind] = statistics.fmean(g) if g else math.nan
        row["all"] = statistics.fmean(golds)
        row["chars"] = statistics.fmean(len(r) for r in responses)
        row["annotator (mean)"] = statistics.fmean(annotator_mean(p, r, annotator) for p, r in zip(prompts, responses))
        row["filler rate"] = statistics.fmean(task.parse_response(r)[1] > 0 for r in responses)
        rows.append(row)
    return pd.DataFrame(rows).set_index("source")


# --------------------------------------------------------------------------------------- models and stages


def families_table(report: dict | None = None) -> pd.DataFrame:
    """The two families side by side: tokenizer, architecture, chat template (rendered), habits, sizes.

    The template is rendered for a one-turn conversation with the family's real tokenizer class
    (the BPE trained on a one-line corpus: its merges do not matter for the template). Parameter
    counts come from ``report["stage_seconds"]`` when a report is given.
    """
    from ..world.families import FAMILIES, build_tokenizer

    messages = [{"role": "user", "content": "sort: 7 2 9 4"}, {"role": "assistant", "content": "2 4 7 9."}]
    rows = []
    for name, spec in FAMILIES.items():
        corpus = None if spec.tokenizer == "char" else ["sort: 7 2 9 4\n2 4 7 9."]
        tok = build_tokenizer(spec, corpus=corpus, vocab_size=300)
        row = {
            "family": name,
            "tokenizer": spec.tokenizer,
            "architecture": spec.arch,
            "chat template (one turn)": tok.apply_chat_template(messages, tokenize=False),
            "habitual openers": ", ".join(spec.openers),
            "SFT mix (writers)": ", ".join(f"{k} {v:.0%}" for k, v in spec.sft_mix.items()),
        }
        if report is not None:
            prof = report.get("profile", {})
            if name != "char" and "bpe_vocab_size" in prof:
                row["vocabulary"] = f"{prof['bpe_vocab_size']} (BPE trained on its corpus)"
            elif name == "char":
                row["vocabulary"] = f"{len(tok)} (characters + special tokens)"
            for size in ("small", "large"):
                stage = report.get("stage_seconds", {}).get(f"{name}/{size}/sft", {})
                if "n_params" in stage:
                    layers, hidden = prof.get(f"{size}_layers"), prof.get(f"{size}_hidden")
                    row[f"{size} model"] = f"{stage['n_params']:,} parameters ({layers} layers × {hidden})"
        rows.append(row)
    return pd.DataFrame(rows).set_index("family").T


def _stages(report: dict) -> pd.DataFrame:
    rows = []
    for key, s in report.get("stage_seconds", {}).items():
        family, size, stage = key.split("/")
        rows.append({"family": family, "size": size, "stage": stage, "parameters": s.get("n_params"),
                     "train seconds": s.get("train_seconds"), "final loss": s.get("final_loss")})
    return pd.DataFrame(rows, columns=["family", "size", "stage", "parameters", "train seconds", "final loss"])


def model_table(report: dict) -> pd.DataFrame:
    """Per model (family, size): parameter count and the training seconds and final loss of each stage."""
    stages = _stages(report)
    if stages.empty:
        return stages
    wide = stages.pivot_table(index=["family", "size"], columns="stage", values=["train seconds", "final loss"])
    wide.columns = [f"{stage} {what}" for what, stage in wide.columns]
    params = stages.groupby(["family", "size"])["parameters"].first()
    out = wide.join(params)
    order = [c for s in ("pretrain", "sft", "peer") for c in (f"{s} train seconds", f"{s} final loss") if c in out]
    return out[["parameters"] + order]


def stage_table(report: dict) -> pd.DataFrame:
    """Every stage of the world build with its seconds, plus the data and total rows (``stage_seconds``)."""
    stages = _stages(report)
    rows = [{"stage": f"{r['family']}/{r['size']}/{r['stage']}", "seconds": r["train seconds"]}
            for r in stages.to_dict("records")]
    total = report.get("world_train_seconds_total")
    rows.append({"stage": "all model training", "seconds": total})
    if "data_seconds" in report:
        rows.append({"stage": "preference data (writers, model samples read from cache, annotator)",
                     "seconds": report["data_seconds"]})
    return pd.DataFrame(rows).set_index("stage")


# --------------------------------------------------------------------------------------- SFT quality


def sft_quality_table(report: dict) -> pd.DataFrame:
    """The 4 SFT models' greedy outputs on held-out prompts: mean gold, termination, filler and degeneration rates."""
    q = report["sft_quality"]
    rows = []
    for m in _ordered_models(q):
        s = q[m]
        rows.append({"model": model_label(m), "role": "student" if m.endswith("/small") else "large model (stronger reference)",
                     "mean gold": s["mean_gold"], "terminated": s["frac_terminated"], "filler rate": s["filler_rate"],
                     "degenerate rate": s["degenerate_rate"], "mean chars": s["mean_chars"]})
    return pd.DataFrame(rows).set_index("model")


def gold_by_kind(report: dict) -> pd.DataFrame:
    """Mean gold by task kind (rows) and model (columns), with an ``all`` row."""
    q = report["sft_quality"]
    cols = {model_label(m): {**q[m]["gold_by_kind"], "all": q[m]["mean_gold"]} for m in _ordered_models(q)}
    frame = pd.DataFrame(cols)
    kinds = [k for k in task.KINDS if k in frame.index] + [k for k in frame.index if k not in task.KINDS and k != "all"]
    return frame.loc[kinds + ["all"]]


def plot_gold_by_kind(report: dict, ax=None):
    """Grouped bars: each SFT model's mean gold per kind and overall (students hatched, lighter)."""
    from .. import plotting

    table = gold_by_kind(report)
    if ax is None:
        fig, ax = plotting.figure(width=7.5, height=3.6)
    else:
        fig = ax.figure
    colours = {"char": plotting.PALETTE["blue"], "bpe": plotting.PALETTE["vermillion"]}
    n = len(table.columns)
    width = 0.8 / n
    for j, col in enumerate(table.columns):
        family = col.split()[0]
        student = col.endswith("student")
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(table.index))]
        ax.bar(xs, table[col].values, width, label=col, color=colours.get(family, plotting.PALETTE["black"]),
               alpha=0.45 if student else 0.95, hatch="//" if student else None, edgecolor="white")
    ax.set_xticks(range(len(table.index)), table.index)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean gold (greedy, held-out prompts)")
    ax.legend(ncols=2, loc="lower right")
    return fig, ax


# --------------------------------------------------------------------------------------- preference data


def preference_summary(report: dict, split: str = "train") -> pd.Series:
    """The preference split in numbers: pairs, length direction, annotator-gold agreement, gold, filler, degeneration."""
    p = report["preference_data"][split]
    return pd.Series({
        "pairs": p["n_pairs"],
        "fraction chosen longer (chars)": p["frac_chosen_longer"],
        "fraction equal length": p["frac_equal_length"],
        "annotator agrees with gold (gold_w > gold_l)": p["agreement"],
        "gold ties": p["gold_ties"],
        "annotator disagrees with gold": p["disagreement"],
        "mean gold, chosen": p["gold_chosen_mean"],
        "mean gold, rejected": p["gold_rejected_mean"],
        "filler rate, chosen": p["filler_rate_chosen"],
        "filler rate, rejected": p["filler_rate_rejected"],
        "degenerate rate, chosen": p["degenerate_rate_chosen"],
        "degenerate rate, rejected": p["degenerate_rate_rejected"],
    }, name=split, dtype=object)


def preference_lengths(report: dict, split: str = "train") -> pd.DataFrame:
    """Mean and median length of chosen and rejected responses, in characters and in each family's tokens."""
    p = report["preference_data"][split]
    units = [("characters", "chars")] + [
        (f"{k[len('tokens_'):-len('_chosen')]} tokens", k[: -len("_chosen")])
        for k in p if k.startswith("tokens_") and k.endswith("_chosen")
    ]
    rows = []
    for label, prefix in units:
        for stat in ("mean", "median"):
            c, r = p[f"{prefix}_chosen"][stat], p[f"{prefix}_rejected"][stat]
            rows.append({"unit": label, "statistic": stat, "chosen": c, "rejected": r, "chosen − rejected": c - r})
    return pd.DataFrame(rows).set_index(["unit", "statistic"])


def source_mix(report: dict, split: str = "train") -> pd.DataFrame:
    """Which sources the chosen and rejected responses come from (counts and shares), writers then models.

    A source is a ``writer`` when it is one of :data:`dpolib.world.writers.SOURCE_POLICIES`, else a
    sampled ``model``; models are listed in the order of the report's design (``design.model_sources``),
    any others after them by name. Columns: ``type`` (``writer`` or ``model``), ``chosen``/``rejected``
    (counts), ``chosen share`` / ``rejected share`` (fractions of the split), ``net`` (chosen share −
    rejected share: what DPO is pushed towards, > 0, or away from, < 0).
    """
    p = report["preference_data"][split]
    sc, sr = p["source_chosen"], p["source_rejected"]
    models = list(report.get("design", {}).get("model_sources", {}))
    sources = [s for s in list(SOURCE_POLICIES) + models if s in sc or s in sr]
    sources += sorted(s for s in set(sc) | set(sr) if s not in sources)
    n = p["n_pairs"]
    frame = pd.DataFrame({
        "type": ["writer" if s in SOURCE_POLICIES else "model" for s in sources],
        "chosen": [sc.get(s, 0) for s in sources],
        "rejected": [sr.get(s, 0) for s in sources],
    }, index=pd.Index(sources, name="source"))
    frame["chosen share"] = frame["chosen"] / n
    frame["rejected share"] = frame["rejected"] / n
    frame["net"] = frame["chosen share"] - frame["rejected share"]
    return frame


def plot_source_mix(report: dict, split: str = "train", ax=None):
    """Horizontal bars: each source's share of the chosen and of the rejected responses."""
    from .. import plotting

    mix = source_mix(report, split).iloc[::-1]
    if ax is None:
        fig, ax = plotting.figure(width=6.4, height=0.32 * len(mix) + 1.2)
    else:
        fig = ax.figure
    ys = range(len(mix))
    h = 0.4
    ax.barh([y + h / 2 for y in ys], mix["chosen share"], h, label="chosen", color=plotting.PALETTE["green"])
    ax.barh([y - h / 2 for y in ys], mix["rejected share"], h, label="rejected", color=plotting.PALETTE["vermillion"])
    labels = [f"{s} (model)" if t == "model" else s for s, t in zip(mix.index, mix["type"])]
    ax.set_yticks(list(ys), labels)
    ax.set_xlabel(f"share of the {split} pairs")
    ax.legend(loc="lower right")
    return fig, ax


# --------------------------------------------------------------------------------------- compatibility


def compatibility_table(report: dict) -> pd.DataFrame:
    """Correlations of sequence log-probs (and of pair margins) between each student and each other model."""
    rows = []
    for key, v in report.get("compatibility", {}).items():
        if " vs " not in key or not isinstance(v, dict):
            continue
        a, b = key.split(" vs ")
        same = a.split("/")[0] == b.split("/")[0]
        relation = ("same family, larger" if same else "other family, larger") if b.endswith("/large") else (
            "same family" if same else "other family, same size")
        rows.append({"student": model_label(a), "other model": model_label(b), "relation": relation,
                     "log-prob correlation": v["logp_corr"], "margin correlation": v["margin_corr"]})
    return pd.DataFrame(rows).set_index(["student", "other model"])


def ranking_accuracy_table(report: dict) -> pd.Series:
    """Each SFT model's ranking accuracy on the validation pairs (log p(y_w|x) > log p(y_l|x))."""
    comp = report.get("compatibility", {})
    out = {}
    for m in MODELS:
        if f"{m} ranking_accuracy" in comp:
            out[model_label(m)] = comp[f"{m} ranking_accuracy"]
    return pd.Series(out, name="ranking accuracy", dtype=float)


# --------------------------------------------------------------------------------------- history of worlds


def read_archived_records(directory: Path | str) -> list[Record]:
    """Every ``*.json`` run record in an archive folder (sorted by file name), as typed records.

    The archive's reader: a record that validates is read with
    :meth:`~dpolib.experiments.records.Record.from_dict`; an older one that lacks metric fields
    added since (world-2's lack ``token_logp_hist``, ``seq_logratio``, ``pair_length_tokens``) is
    read with those fields set to ``None``. The fields the history reads (``lc_win_rate``,
    ``gold_score``, ``degenerate``) and a valid config must be present, or
    :class:`~dpolib.experiments.records.RecordError` names the file. The profile's measured
    compatibility (``compatibility.json``, archived with world-3's records) and its learning-rate
    choices (``lr_choice.json``, archived with world-4's) are not run records and are skipped.
    """
    out = []
    for path in sorted(Path(directory).glob("*.json")):
        if path.name in NOT_RUN_RECORDS:
            continue
        raw = read_json(path)
        try:
            out.append(Record.from_dict(raw, path))
            continue
        except RecordError:
            pass
        metrics = raw.get("metrics", {})
        needed = [k for k in ("lc_win_rate", "gold_score", "degenerate") if k not in metrics]
        if needed:
            raise RecordError(path, f"an archived record without {', '.join(needed)}")
        try:
            config = RunConfig(**raw["config"])
        except (KeyError, TypeError, ValueError) as err:
            raise RecordError(path, f"not a valid config ({type(err).__name__}: {err})") from err
        partial = Metrics(**{f.name: metrics.get(f.name) for f in fields(Metrics)})
        out.append(Record(config, partial, tuple(raw.get("curves", ())), dict(raw.get("provenance", {})),
                          raw.get("key", ""), raw.get("label", config.label()), dict(raw.get("profile", {})),
                          raw.get("reference_name", ""), path))
    return out


def rq1_outcome(records: Iterable[Record], seed: int = 0) -> pd.DataFrame:
    """Per student: the SFT model's LC win rate and gold, and the best self-reference DPO run.

    Reads the SFT records and the DPO records with ``reference == "self"`` at ``seed`` (any β
    present); the best run is :func:`dpolib.experiments.records.best_record` (degenerate runs
    excluded). Columns: ``SFT LC``, ``SFT gold``, ``best DPO LC``, ``best β``, ``DPO gold``,
    ``DPO beats SFT`` (on LC), ``βs tried``, ``degenerate runs``.
    """
    by_student: dict = {}
    for r in records:
        if r.seed != seed:
            continue
        if r.is_sft or (r.objective == "dpo" and r.reference == "self"):
            by_student.setdefault(r.student, []).append(r)
    rows = []
    for student in sorted(by_student, key=lambda s: (s != "char", s)):
        recs = by_student[student]
        sft = next((r for r in recs if r.is_sft), None)
        dpo = [r for r in recs if r.objective == "dpo"]
        best = best_record(dpo)
        sft_lc = sft.lc if sft else math.nan
        rows.append({
            "student": student,
            "SFT LC": sft_lc,
            "SFT gold": sft.gold if sft else math.nan,
            "best DPO LC": best.lc if best else math.nan,
            "best β": best.beta if best else math.nan,
            "DPO gold": best.gold if best else math.nan,
            "DPO beats SFT": (best.lc > sft_lc) if (best and sft) else None,
            "βs tried": len({r.beta for r in dpo}),
            "degenerate runs": sum(r.degenerate for r in dpo),
        })
    return pd.DataFrame(rows, columns=["student", "SFT LC", "SFT gold", "best DPO LC", "best β", "DPO gold",
                                       "DPO beats SFT", "βs tried", "degenerate runs"])


def archived_worlds(root: Path | None = None, profile: str = "cpu") -> list[dict]:
    """The superseded worlds under ``<root>/archive/``, oldest first.

    Oldest by the build date of each world's report (``date``), then by folder name: folder names
    do not sort in time (world-3a came before world-3); a world without a report comes first.
    Each: ``name``, ``path``, ``report`` (the archived ``world_report_<profile>.json`` or ``None``),
    ``records`` (the archived ``<profile>/*.json`` run records, :func:`read_archived_records`),
    ``readme`` (its README text or ``""``).
    """
    base = Path(root or paths.results_root()) / "archive"
    out = []
    for d in sorted(p for p in base.glob("*") if p.is_dir()):
        rp = d / f"world_report_{profile}.json"
        readme = d / "README.md"
        out.append({
            "name": d.name,
            "path": d,
            "report": read_json(rp) if rp.exists() else None,
            "records": read_archived_records(d / profile) if (d / profile).is_dir() else [],
            "readme": readme.read_text() if readme.exists() else "",
        })
    return sorted(out, key=lambda w: (str((w["report"] or {}).get("date", "")), w["name"]))


def world_history(current_records: list[Record], current_report: dict | None, root: Path | None = None,
                  profile: str = "cpu", split: str = "train") -> tuple[pd.DataFrame, list[str]]:
    """Each world's RQ1 outcome beside what its preference data rewarded, oldest world first.

    One row per world and student: the world's change (:data:`WORLD_CHANGES`), the records read,
    :func:`rq1_outcome`'s columns, and the filler rate of chosen and rejected responses in its
    report's ``split``. Returns ``(table, notes)``; the notes say what is missing or stale (no
    current records yet, a current report identical in date to an archived one).
    """
    worlds = archived_worlds(root, profile) + [{"name": "current", "report": current_report, "records": current_records}]
    notes = []
    archived_dates = {w["report"].get("date"): w["name"] for w in worlds[:-1] if w["report"]}
    if current_report is not None and current_report.get("date") in archived_dates:
        notes.append(f"The current world report carries the same build date as the archived "
                     f"{archived_dates[current_report['date']]!r} report: the current world has not been "
                     "rebuilt yet, so its row repeats that world's preference data.")
    frames = []
    for w in worlds:
        outcome = rq1_outcome(w["records"])
        if outcome.empty:
            notes.append(f"No RQ1 records for the {w['name']!r} world yet.")
            outcome = pd.DataFrame([{"student": "–"}], columns=outcome.columns)
        rep = (w["report"] or {}).get("preference_data", {}).get(split, {})
        outcome.insert(0, "world", w["name"])
        outcome.insert(1, "what changed", WORLD_CHANGES.get(w["name"], ""))
        outcome.insert(2, "records", len(w["records"]))
        outcome["filler rate chosen"] = rep.get("filler_rate_chosen", math.nan)
        outcome["filler rate rejected"] = rep.get("filler_rate_rejected", math.nan)
        frames.append(outcome)
    return pd.concat(frames, ignore_index=True), notes


def dpo_wins(history: pd.DataFrame, world: str) -> tuple[int, int]:
    """``(students whose best DPO run beats SFT on LC win rate, students with an outcome)`` in ``world``'s rows."""
    rows = history[(history["world"] == world) & history["DPO beats SFT"].notna()]
    return int(rows["DPO beats SFT"].astype(bool).sum()), len(rows)
