"""The exact world's and the theory chapter's records: written with provenance and a key, read back, never stale.

The writer (:mod:`dpolib.experiments.exact`) runs here on tiny configs (a 4-prompt world, a few
steps, two identities), so the whole file takes seconds; the key logic is also tested with the
computation replaced by a stub that counts its calls.
"""

from __future__ import annotations

import json

import pytest

from dpolib.experiments import exact as E
from dpolib.experiments import exact_records as ER
from dpolib.experiments.exact_records import ExactConfig, TheoryConfig
from dpolib.provenance import CHECKSUM_FIELD, atomic_write_json, read_json

TINY_EXACT = ExactConfig(
    world=(("n_prompts", 4), ("n_responses", 5), ("n_pairs", 16)), steps=4, n_betas=3, population_prompts=2,
    population_betas=(1.0,), robustness_seeds=2, robustness_betas=3, budget_steps=8, kappas=(3.0,),
)
TINY_THEORY = TheoryConfig(identities=("bradley_terry_is_sigmoid", "same_class_same_preferences"), points=2,
                           autograd_points=3)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    return root, {c: E.write(c, root=root) for c in (TINY_EXACT, TINY_THEORY)}


@pytest.fixture
def stub(monkeypatch):
    """Replace both computations by a stub that counts its calls."""
    calls = []

    def fake(config):
        calls.append(config)
        return {"answer": len(calls)}

    monkeypatch.setattr(E, "exact_record", fake)
    monkeypatch.setattr(E, "theory_record", fake)
    return calls


@pytest.mark.parametrize("config", [TINY_EXACT, TINY_THEORY], ids=["exact", "theory"])
def test_the_writer_writes_a_record_with_provenance_named_by_its_key(written, config):
    root, out = written
    record, computed = out[config]
    assert computed
    path = ER.record_path(config, root)
    assert path == root / ER._kind(config) / f"{ER.record_key(config)}.json"
    assert path.exists()
    assert CHECKSUM_FIELD in json.loads(path.read_text())  # written with its checksum
    assert record["key"] == ER.record_key(config) == path.stem
    assert record["version"] == ER.version_of(config)
    assert record["config"] == json.loads(json.dumps(config.to_dict()))
    for field in ("git_commit", "versions", "device", "created_utc", "wall_time_s"):
        assert field in record["provenance"]
    assert ER.read(config, root) == record


def test_the_exact_record_holds_every_sweep_of_the_chapter(written):
    root, out = written
    record, _ = out[TINY_EXACT]
    n = TINY_EXACT.n_betas
    assert len(record["betas"]) == n and record["betas"][0] == pytest.approx(1e-3) and record["betas"][-1] == pytest.approx(1e2)
    assert record["world"]["config"]["n_prompts"] == 4  # the overrides reached the world
    assert [o for o, _ in record["objectives"]] == ["dpo", "probability", "likelihood"]
    for student in ("full", "loglinear"):
        for objective, _ in record["objectives"]:
            sweep = record["sweeps"][student][objective]
            assert set(sweep["curve"]) == set(E.CURVE_METRICS)
            assert all(len(v) == n for v in sweep["curve"].values())
            assert sweep["summary"]["best gold"] == pytest.approx(max(sweep["curve"]["gold"]), abs=1e-5)
    assert len(record["closed_form_gold"]["dpo"]) == n
    names = [r["name"] for r in record["references"]]
    assert names == ["sft", "compatible weak", "incompatible weak", "compatible strong", "incompatible strong"]
    assert {r["name"]: r["kind"] for r in record["references"]}["incompatible strong"] == "incompatible"
    assert len(record["population"]["gaps"]) == 3 and max(g["gap"] for g in record["population"]["gaps"]) < 1e-9
    worlds = record["robustness"]["worlds"]
    assert [w["seed"] for w in worlds] == [0, 1]
    assert set(worlds[0]["references"]) == {"sft", "uniform", "prior", "compatible", "incompatible"}
    assert [row["steps"] for row in record["exercises"]["budget"]] == [4, 8]
    assert [row["kappa"] for row in record["exercises"]["kappa"]] == [3.0]


def test_the_theory_record_holds_each_identity_and_the_numeric_checks(written):
    root, out = written
    record, _ = out[TINY_THEORY]
    assert [row["key"] for row in record["identities"]] == list(TINY_THEORY.identities)
    assert all(row["holds"] and row["passes"] and row["latex"] for row in record["identities"])
    assert record["autograd"]["points"] == 3
    assert max(record["autograd"]["max_loss_gap"], record["autograd"]["max_grad_gap"]) < 1e-12
    assert record["constant_reference_gap"] < 1e-12
    assert record["pair_optimum"]["curvature_positive"]
    assert [m[0] for m in record["weight_margin"]["margins"]] == [0.01, 0.1, 1.0]
    assert set(record["kkt"]) >= {"lagrangian", "p_star", "lambda_star"}
    assert [f["reference"] for f in record["no_finite_minimiser"]] == [False, True]


def test_an_unknown_identity_is_refused():
    with pytest.raises(ValueError, match="unknown identities"):
        E.theory_record(TheoryConfig(identities=("no_such_identity",)))


def test_a_record_with_the_same_key_is_read_back_not_recomputed(tmp_path, stub):
    first, computed = E.write(TINY_EXACT, root=tmp_path)
    again, computed_again = E.write(TINY_EXACT, root=tmp_path)
    assert computed and not computed_again
    assert again == first and len(stub) == 1
    _, forced = E.write(TINY_EXACT, root=tmp_path, force=True)
    assert forced and len(stub) == 2


def test_a_changed_config_or_code_version_changes_the_key_and_is_recomputed(tmp_path, stub, monkeypatch):
    E.write(TINY_THEORY, root=tmp_path)
    changed = TheoryConfig(identities=TINY_THEORY.identities, points=3, autograd_points=3)
    assert ER.record_key(changed) != ER.record_key(TINY_THEORY)
    _, computed = E.write(changed, root=tmp_path)
    assert computed and len(stub) == 2
    old_key = ER.record_key(TINY_THEORY)
    monkeypatch.setattr(ER, "THEORY_VERSION", ER.THEORY_VERSION + "-next")
    assert ER.record_key(TINY_THEORY) != old_key
    with pytest.raises(FileNotFoundError, match="python -m dpolib.experiments exact"):
        ER.read(TINY_THEORY, tmp_path)  # the old record is not read for the new version
    record, computed = E.write(TINY_THEORY, root=tmp_path)
    assert computed and len(stub) == 3 and record["version"] == ER.THEORY_VERSION


def test_a_file_whose_stored_key_does_not_match_is_recomputed_never_read(tmp_path, stub):
    E.write(TINY_EXACT, root=tmp_path)
    path = ER.record_path(TINY_EXACT, tmp_path)
    stale = read_json(path)
    stale["version"] = "0"  # e.g. copied over from an older checkout
    atomic_write_json(path, stale)
    with pytest.raises(ValueError, match="--force"):
        ER.read(TINY_EXACT, tmp_path)
    record, computed = E.write(TINY_EXACT, root=tmp_path)
    assert computed and len(stub) == 2 and record["version"] == ER.EXACT_VERSION
    assert ER.read(TINY_EXACT, tmp_path) == record


def test_a_damaged_record_is_moved_aside_and_recomputed(tmp_path, stub):
    E.write(TINY_EXACT, root=tmp_path)
    path = ER.record_path(TINY_EXACT, tmp_path)
    path.write_text(path.read_text()[:40])  # truncated
    with pytest.warns(UserWarning, match="damaged"):
        _, computed = E.write(TINY_EXACT, root=tmp_path)
    assert computed and path.with_name(path.name + ".corrupt").exists()


def test_a_missing_record_names_the_command_that_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m dpolib.experiments exact"):
        ER.read(ExactConfig(), tmp_path)
    with pytest.raises(TypeError):
        ER.record_key(object())


def test_the_cli_writes_both_records(monkeypatch):
    from dpolib.experiments.__main__ import main

    seen = []
    monkeypatch.setattr(E, "write_all", lambda force=False: seen.append(force))
    assert main(["exact"]) == 0 and main(["exact", "--force"]) == 0
    assert seen == [False, True]


@pytest.mark.parametrize("config", [ExactConfig(), TheoryConfig()], ids=["exact", "theory"])
def test_the_books_records_are_committed_for_the_current_code_version(config):
    """Bumping EXACT_VERSION or THEORY_VERSION without rewriting the records fails here, not in the book build."""
    record = ER.read(config)
    assert record["provenance"]["git_commit"] != "unknown"
