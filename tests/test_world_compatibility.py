"""The stored compatibility measurement (dpolib.world.compatibility): which model plays which role, and when a
stored measurement is current. The measurement itself loads the world's models; it runs in ``python -m
dpolib.experiments world``, not here."""

import pytest

from dpolib import paths
from dpolib.provenance import read_json, write_json
from dpolib.world import compatibility, families
from dpolib.world.profiles import get_profile

SMOKE = get_profile("smoke")
MEASURES = {"char": {"self": {"logp_corr": 1.0}}, "bpe": {"self": {"logp_corr": 1.0}}}


def test_reference_roles_follow_the_cpu_backend():
    assert families.reference_model("char", "self") == ("char", "small")
    assert families.reference_model("char", "compatible") == ("char", "large")
    assert families.reference_model("char", "incompatible") == ("bpe", "large")
    assert families.reference_model("bpe", "incompatible") == ("char", "large")
    with pytest.raises(ValueError, match="reference must be one of"):
        families.reference_model("char", "uniform")


def test_world_keys_change_with_the_models():
    keys = compatibility.world_keys(SMOKE)
    assert set(keys) == {"char/small", "char/large", "bpe/small", "bpe/large"}
    assert keys != compatibility.world_keys(get_profile("smoke", sft_steps=SMOKE.sft_steps + 1))


def test_a_stored_measurement_is_read_back_only_for_the_same_world(tmp_path):
    path = paths.compatibility_path("smoke", tmp_path)
    assert path == tmp_path / "smoke" / "compatibility.json" and compatibility.cached(SMOKE, tmp_path) is None
    write_json(path, {"world": compatibility.world_keys(SMOKE), "measures": MEASURES, "provenance": {}})
    assert compatibility.cached(SMOKE, tmp_path)["measures"] == MEASURES
    write_json(path, {"world": {"char/small": "another world"}, "measures": {}, "provenance": {}})
    assert compatibility.cached(SMOKE, tmp_path) is None


def test_write_measures_only_when_stale_or_forced(tmp_path, monkeypatch):
    calls = []

    def fake_measure(profile, sample_seed=0, cache_dir=None):
        calls.append(profile.name)
        return {"profile": profile.name, "world": compatibility.world_keys(profile), "measures": MEASURES,
                "provenance": {"git_commit": "x"}}

    monkeypatch.setattr(compatibility, "measure_compatibility", fake_measure)
    path = compatibility.write_compatibility(SMOKE, tmp_path)
    assert calls == ["smoke"] and read_json(path)["measures"] == MEASURES
    assert compatibility.write_compatibility(SMOKE, tmp_path) == path and calls == ["smoke"]  # current: kept
    compatibility.write_compatibility(SMOKE, tmp_path, force=True)
    assert calls == ["smoke", "smoke"]


def test_the_committed_measurements_are_current():
    for name in ("smoke", "cpu"):
        path = paths.compatibility_path(name)
        if not path.exists():
            pytest.skip(f"no committed compatibility measurement at {name}")
        stored = compatibility.cached(get_profile(name))
        assert stored is not None, f"{path} was measured on other models; rerun python -m dpolib.experiments world"
        assert set(stored["measures"]) == {"char", "bpe"} and "git_commit" in stored["provenance"]
