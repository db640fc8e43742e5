"""Files under interruption and damage (issue 14, items 2 and 7): atomic writes, checksums, quarantine, locks, model folders."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest

import tiny
from dpolib import provenance as P
from dpolib.models import (
    COMPLETE_MARKER,
    is_complete_model_dir,
    load_causal_lm,
    model_dir_problem,
    reusable_model_dir,
    save_pretrained_atomic,
)
from dpolib.references import CachedReference

# ------------------------------------------------------------------ atomic writes and checksums


def test_checked_json_round_trip_and_checksum_field(tmp_path):
    obj = {"b": [1.0, -2.5e-300, 3], "a": {"x": "y"}, "t": (1, 2)}
    path = P.atomic_write_json(tmp_path / "deep" / "r.json", obj)
    on_disk = json.loads(path.read_text())
    assert len(on_disk[P.CHECKSUM_FIELD]) == 64
    assert P.read_json_checked(path) == {"b": [1.0, -2.5e-300, 3], "a": {"x": "y"}, "t": [1, 2]}
    assert P.read_json(path) == P.read_json_checked(path)  # the plain reader verifies and drops the field too


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "the file is empty"),
        (b'{"a": [1, 2', "not valid JSON"),
        (b"\x80\x04\x95\x00garbage", "not UTF-8"),
        (b'{"a": 1}', "no '_sha256' checksum"),
        (b'{"a": 2, "_sha256": "00"}', "checksum mismatch"),
    ],
)
def test_damaged_json_names_the_file_and_reason(tmp_path, content, reason):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(P.CorruptFileError, match=reason) as err:
        P.read_json_checked(path)
    assert err.value.path == path and str(path) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_edited_value_fails_the_checksum(tmp_path):
    path = P.atomic_write_json(tmp_path / "r.json", {"values": [1.0, 2.0]})
    path.write_text(path.read_text().replace("2.0", "2.5"))
    with pytest.raises(P.CorruptFileError, match="checksum mismatch"):
        P.read_json(path)


def test_plain_json_still_reads(tmp_path):
    path = P.write_json(tmp_path / "a" / "record.json", {"x": 1})
    assert P.read_json(path) == {"x": 1} and P.CHECKSUM_FIELD not in path.read_text()


def test_atomic_write_interrupted_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = P.atomic_write_bytes(tmp_path / "f.bin", b"old")

    def killed(*a, **k):
        raise KeyboardInterrupt  # a kill between writing the temp file and renaming it

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        P.atomic_write_bytes(path, b"new" * 1000)
    with pytest.raises(KeyboardInterrupt):
        P.write_json(tmp_path / "r.json", {"x": 1})
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_atomic_json_refuses_non_objects_and_reserved_key(tmp_path):
    with pytest.raises(TypeError, match="dict"):
        P.atomic_write_json(tmp_path / "r.json", [1, 2])
    with pytest.raises(ValueError, match="reserved"):
        P.atomic_write_json(tmp_path / "r.json", {P.CHECKSUM_FIELD: "x"})


# ------------------------------------------------------------------ quarantine


def test_quarantine_numbers_and_warns_once_per_file(tmp_path):
    path = tmp_path / "cache.json"
    names = []
    for _ in range(3):
        path.write_text("junk")
        with pytest.warns(P.CorruptFileWarning, match=r"cache\.json is damaged \(bad\); moved it aside to cache\.json\.corrupt") as rec:
            names.append(P.quarantine(path, "bad").name)
        assert len(rec) == 1
    assert names == ["cache.json.corrupt", "cache.json.corrupt.1", "cache.json.corrupt.2"] and not path.exists()


def test_cached_reference_table_round_trip_and_damage(tmp_path):
    path = CachedReference({"k1": -1.5, "k2": -3.25}, name="t").save(tmp_path / "t.json")
    assert CachedReference.load(path).table == {"k1": -1.5, "k2": -3.25}
    path.write_text(path.read_text()[:20])
    with pytest.raises(P.CorruptFileError, match="t.json: not valid JSON"):
        CachedReference.load(path)


# ------------------------------------------------------------------ locks


def test_file_lock_excludes_threads(tmp_path):
    inside, overlaps = [], []

    def work():
        with P.file_lock(tmp_path / "key.json"):
            if inside:
                overlaps.append(1)
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps


def test_file_lock_excludes_processes(tmp_path):
    """A second process waits for the holder, so it never reads a file the first is still producing."""
    target = tmp_path / "key.json"
    child = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(P.__file__.rsplit('/dpolib/', 1)[0])!r})
        from dpolib.provenance import file_lock, atomic_write_json
        with file_lock({str(target)!r}):
            print("locked", flush=True)
            time.sleep(1.0)
            atomic_write_json({str(target)!r}, {{"by": "child"}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    start = time.monotonic()
    with P.file_lock(target):
        waited = time.monotonic() - start
        assert P.read_json_checked(target) == {"by": "child"}
    proc.wait(timeout=30)
    assert waited > 0.5 and proc.returncode == 0


# ------------------------------------------------------------------ item 7: saved policies


@pytest.fixture(scope="module")
def small():
    tok = tiny.char_tokenizer()
    return tiny.char_model(tok, seed=0, n_layer=1, n_embd=16), tok


def test_save_pretrained_atomic_writes_a_verified_folder(small, tmp_path):
    model, tok = small
    out = save_pretrained_atomic(model, tok, tmp_path / "best")
    assert (out / COMPLETE_MARKER).is_file() and is_complete_model_dir(out) and reusable_model_dir(out)
    loaded, _ = load_causal_lm(out)
    assert all((a == b).all() for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    save_pretrained_atomic(model, tok, out)  # replacing an existing folder
    assert is_complete_model_dir(out)
    assert [p.name for p in tmp_path.iterdir()] == ["best"]  # no temporary or old siblings left


def test_interrupted_save_leaves_no_folder(small, tmp_path, monkeypatch):
    model, tok = small

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(tok), "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained_atomic(model, tok, tmp_path / "best")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated_weights", "no_tokenizer", "marker_size", "bad_config"])
def test_half_written_policy_is_detected_quarantined_and_rebuilt(small, tmp_path, damage):
    """main: a half-written rq1-best folder gave SafetensorError / Unrecognized model until deleted by hand."""
    model, tok = small
    out = tmp_path / "best"
    if damage == "truncated_weights":  # as an interrupted plain save_pretrained leaves it, without our marker
        model.save_pretrained(out)
        tok.save_pretrained(out)
        weights = out / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        save_pretrained_atomic(model, tok, out)
        if damage == "no_tokenizer":
            (out / "tokenizer.json").unlink()
        elif damage == "marker_size":
            (out / "tokenizer_config.json").write_text("{}")
        else:
            (out / "config.json").write_text('{"model_type": "gpt')
    problem = model_dir_problem(out)
    assert problem and not is_complete_model_dir(out)
    with pytest.warns(P.CorruptFileWarning, match=r"best is damaged .*moved it aside to best\.corrupt"):
        assert not reusable_model_dir(out)
    assert not out.exists() and (tmp_path / "best.corrupt").is_dir()
    save_pretrained_atomic(model, tok, out)  # the caller rebuilds it
    with warnings.catch_warnings():
        warnings.simplefilter("error", P.CorruptFileWarning)
        assert reusable_model_dir(out)
    load_causal_lm(out)


def test_absent_folder_is_not_reusable_and_not_quarantined(tmp_path):
    assert not reusable_model_dir(tmp_path / "nothing") and list(tmp_path.iterdir()) == []
