"""The reference path under bad input and interruption (issue 14, items 1, 2, 4, 5 and 8).

Each test feeds the input that misbehaved on main and checks for a clear error,
a recomputation with one warning, or the right value.
"""

import copy
import json
import math
import re
import threading
import time
import warnings

import pytest
import torch
from datasets import Dataset, IterableDataset
from trl import DPOTrainer

import tiny
from dpolib.provenance import CorruptFileWarning, atomic_write_json, read_json_checked
from dpolib.references import REF_COLUMNS, REF_SCORING_COLUMN, ModelReference, UniformReference, precompute
from dpolib.trl_bridge import PrecomputedRefDPOTrainer, make_dpo_config


@pytest.fixture(scope="module")
def char():
    tok = tiny.char_tokenizer()
    return tiny.char_model(tok, seed=3, n_layer=1, n_embd=32), tok


@pytest.fixture(scope="module")
def long_rows():
    """Conversational pairs whose rejected answers run past 64 tokens (the char tokenizer: one token per character)."""
    rows = tiny.preference_rows(8, conversational=True, seed=4)
    for i, row in enumerate(rows):
        if i % 2 == 0:
            row["rejected"][0]["content"] = "of course! " * 8 + "it is seven."
    return Dataset.from_list(rows)


def config(tmp_path, **kw):
    base = dict(beta=0.1, learning_rate=1e-3, per_device_train_batch_size=4, max_steps=1, seed=0)
    base.update(kw)
    return make_dpo_config(str(tmp_path / "out"), **base)


def one_batch(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    return loss, {k: v[-1] for k, v in trainer._metrics["eval"].items() if v}


# ------------------------------------------------------------------ item 1: silent wrong margins


def test_reference_scored_whole_but_trainer_truncates_is_refused(char, long_rows, tmp_path):
    """main: policy = reference, yet rewards 20.9 / 37.0 and loss 16.13, because only the policy was cut at 64."""
    model, tok = char
    pre = precompute(long_rows, ModelReference(model, tok, progress=False), use_cache=False)  # max_length=None
    record = json.loads(pre[0][REF_SCORING_COLUMN])
    assert record["max_length"] is None and record["truncated"] == 0 and record["truncation"] == "keep_start"
    with pytest.raises(ValueError) as err:
        PrecomputedRefDPOTrainer(copy.deepcopy(model), args=config(tmp_path, max_length=64), train_dataset=pre, processing_class=tok)
    message = str(err.value)
    assert "scored with max_length=None" in message and "DPOConfig max_length=64" in message
    assert re.search(r"the trainer cuts [1-8] of 8 pairs", message) and "ModelReference(..., max_length=64)" in message


def test_reference_scored_like_the_trainer_gives_log2(char, long_rows, tmp_path):
    """The fix the message names: score with the trainer's max_length; policy = reference then gives ln 2 and zero rewards."""
    model, tok = char
    pre = precompute(long_rows, ModelReference(model, tok, progress=False, max_length=64), use_cache=False)
    assert json.loads(pre[0][REF_SCORING_COLUMN])["truncated"] >= 4
    for loss, kwargs in (("sigmoid", {}), ("cdpo", {"label_smoothing": 0.0})):  # TRL's own loss, and our override
        trainer = PrecomputedRefDPOTrainer(
            copy.deepcopy(model), args=config(tmp_path, max_length=64), train_dataset=pre, processing_class=tok,
            loss=loss, loss_kwargs=kwargs,
        )
        value, metrics = one_batch(trainer)
        assert value == pytest.approx(math.log(2), abs=1e-5)
        assert abs(metrics["rewards/chosen"]) < 1e-5 and abs(metrics["rewards/rejected"]) < 1e-5


def test_reference_truncating_what_the_trainer_keeps_is_refused(char, long_rows, tmp_path):
    model, tok = char
    pre = precompute(long_rows, ModelReference(model, tok, progress=False, max_length=64), use_cache=False)
    with pytest.raises(ValueError, match=r"scored with max_length=64 \(keep_start\), cutting \d+ responses.*max_length=None"):
        PrecomputedRefDPOTrainer(copy.deepcopy(model), args=config(tmp_path, max_length=None), train_dataset=pre, processing_class=tok)


def test_settings_may_differ_when_nothing_is_cut(char, tmp_path):
    """Short pairs: no side cuts anything, so a reference scored with max_length=None trains under max_length=128."""
    model, tok = char
    ds = Dataset.from_list(tiny.preference_rows(8, conversational=True))
    pre = precompute(ds, ModelReference(model, tok, progress=False), use_cache=False)
    args = config(tmp_path, max_length=128)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PrecomputedRefDPOTrainer(copy.deepcopy(model), args=args, train_dataset=pre, processing_class=tok)
    assert not [w for w in caught if "reference" in str(w.message)], [str(w.message) for w in caught]


def test_uniform_reference_is_never_refused(char, long_rows, tmp_path):
    model, tok = char
    pre = precompute(long_rows, UniformReference(), use_cache=False)
    PrecomputedRefDPOTrainer(copy.deepcopy(model), args=config(tmp_path, max_length=64), train_dataset=pre, processing_class=tok)


def test_columns_without_a_record_warn(char, long_rows, tmp_path):
    model, tok = char
    pre = precompute(long_rows, ModelReference(model, tok, progress=False), use_cache=False).remove_columns(REF_SCORING_COLUMN)
    with pytest.warns(UserWarning, match=r"carry no 'ref_scoring' record.*the trainer cuts [1-8] of 8 pairs"):
        PrecomputedRefDPOTrainer(copy.deepcopy(model), args=config(tmp_path, max_length=64), train_dataset=pre, processing_class=tok)


# ------------------------------------------------------------------ item 2: the reference cache


def cache_file(cache_dir):
    files = sorted((cache_dir / "ref_logps").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b"\x80\x04\x95garbage\x00\xff"), id="garbage"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
    ],
)
def test_damaged_cache_is_named_moved_aside_and_recomputed_once(char, tmp_path, damage):
    """main: UnpicklingError / PytorchStreamReader / EOFError, no file named, and every rerun failed again."""
    model, tok = char
    ds = Dataset.from_list(tiny.preference_rows(6))
    ref = ModelReference(model, tok, progress=False)
    good = precompute(ds, ref, cache_dir=tmp_path)
    path = cache_file(tmp_path)
    damage(path)
    with pytest.warns(CorruptFileWarning, match=rf"{path.name} is damaged .*moved it aside to {path.name}\.corrupt"):
        again = precompute(ds, ref, cache_dir=tmp_path)
    assert again[REF_COLUMNS[0]] == good[REF_COLUMNS[0]] and again[REF_COLUMNS[1]] == good[REF_COLUMNS[1]]
    assert path.with_name(path.name + ".corrupt").exists() and path.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptFileWarning)  # said once: the next run is a clean hit
        precompute(ds, ref, cache_dir=tmp_path)


@pytest.mark.parametrize("edit", ["swap_rows", "zero_values", "swap_columns"])
def test_well_formed_cache_with_wrong_contents_is_caught(char, tmp_path, edit):
    """main used such a cache silently. A valid checksum does not save it: the spot check re-scores rows."""
    model, tok = char
    ds = Dataset.from_list(tiny.preference_rows(6))
    ref = ModelReference(model, tok, progress=False)
    good = precompute(ds, ref, cache_dir=tmp_path)
    path = cache_file(tmp_path)
    data = read_json_checked(path)
    if edit == "swap_rows":
        data["chosen"][0], data["chosen"][-1] = data["chosen"][-1], data["chosen"][0]
    elif edit == "zero_values":
        data["chosen"] = [0.0] * 6
    else:
        data["chosen"], data["rejected"] = data["rejected"], data["chosen"]
    atomic_write_json(path, data)  # a well-formed file with a valid checksum
    with pytest.warns(CorruptFileWarning, match="spot check failed"):
        again = precompute(ds, ref, cache_dir=tmp_path)
    assert again[REF_COLUMNS[0]] == good[REF_COLUMNS[0]]


def test_cache_edited_without_its_checksum_is_caught(char, tmp_path):
    model, tok = char
    ds = Dataset.from_list(tiny.preference_rows(6))
    ref = ModelReference(model, tok, progress=False)
    precompute(ds, ref, cache_dir=tmp_path)
    path = cache_file(tmp_path)
    data = json.loads(path.read_text())
    data["rejected"][2] += 1.0  # an interior row the spot check does not visit
    path.write_text(json.dumps(data))
    with pytest.warns(CorruptFileWarning, match="checksum mismatch"):
        precompute(ds, ref, cache_dir=tmp_path, spot_check=0)


def test_fingerprint_sees_permuted_rows_dtype_and_in_place_changes(char):
    """main hashed a sum and abs-sum per tensor (blind to permutations) and memoised the result."""
    model, tok = char
    ref = ModelReference(copy.deepcopy(model), tok, progress=False)
    before = ref.fingerprint()
    weight = ref.model.transformer.wte.weight
    with torch.no_grad():
        weight[[3, 4]] = weight[[4, 3]]  # same sums and abs-sums per tensor
    permuted = ref.fingerprint()
    assert permuted != before  # also: fingerprint() was called before the in-place change
    with torch.no_grad():
        weight.data[5, 0] += 1e-6  # through .data: no autograd version bump
    assert ref.fingerprint() not in (before, permuted)
    assert ModelReference(copy.deepcopy(model).double(), tok).fingerprint() != ModelReference(model, tok).fingerprint()


class SlowReference:
    """A reference that takes a while and counts full scorings, to race two workers on one cache key."""

    name = "slow"

    def __init__(self):
        self.full = 0
        self.lock = threading.Lock()

    def fingerprint(self):
        return "slow-v1"

    def logps(self, prompts, responses):
        if len(responses) > 6:
            with self.lock:
                self.full += 1
            time.sleep(0.5)
        return torch.tensor([-float(len(str(r))) for r in responses], dtype=torch.float64)


def test_concurrent_workers_score_a_key_once_and_agree(tmp_path):
    ds = Dataset.from_list(tiny.preference_rows(10))
    ref = SlowReference()
    results = [None, None]

    def work(i):
        results[i] = precompute(ds, ref, cache_dir=tmp_path)[REF_COLUMNS[0]]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ref.full == 1 and results[0] == results[1] is not None
    assert not list((tmp_path / "ref_logps").glob("*.tmp"))


# ------------------------------------------------------------------ item 5: context overflow


def test_response_longer_than_the_model_context(char):
    """main: torch's ``IndexError: index out of range in self`` from the position embedding."""
    model, tok = char  # GPT-2 with n_positions=256
    ref = ModelReference(model, tok, progress=False)
    long = "one two three " * 25  # 350 characters
    with pytest.raises(ValueError, match=r"row 1: prompt \+ response is \d+ tokens, but the reference model .* context of 256"):
        ref.logps(["hi ", "hi "], ["ok.", long])
    ds = Dataset.from_list([{"prompt": "hi ", "chosen": "ok.", "rejected": long}])
    with pytest.raises(ValueError, match="max_length=L"):
        precompute(ds, ref, use_cache=False)
    assert torch.isfinite(ModelReference(model, tok, progress=False, max_length=200).logps(["hi "], [long])).all()


# ------------------------------------------------------------------ item 4 at the trainer: "ipo" is TRL's ipo


def test_trainer_ipo_is_trl_ipo_and_ipo_sum_differs(char, tmp_path):
    model, tok = char
    ds = Dataset.from_list(tiny.preference_rows(8, conversational=True))
    policy = copy.deepcopy(model)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p, generator=torch.Generator().manual_seed(0)))
    trl = DPOTrainer(
        copy.deepcopy(policy), ref_model=copy.deepcopy(model), args=config(tmp_path / "a", loss_type=["ipo"], max_length=128),
        train_dataset=ds, processing_class=tok,
    )
    pre = precompute(ds, ModelReference(copy.deepcopy(model), tok, progress=False, max_length=128), use_cache=False)
    ours = {
        name: PrecomputedRefDPOTrainer(
            copy.deepcopy(policy), args=config(tmp_path / name, max_length=128), train_dataset=pre, processing_class=tok, loss=name
        )
        for name in ("ipo", "ipo_sum")
    }
    theirs = one_batch(trl)[0]
    assert one_batch(ours["ipo"])[0] == pytest.approx(theirs, abs=1e-5)
    assert abs(one_batch(ours["ipo_sum"])[0] - theirs) > 1e-2


# ------------------------------------------------------------------ item 8: construction-time guards


def test_loss_kwargs_typo_caught_at_construction(char, tmp_path):
    """main: the typo surfaced only at the first training step."""
    model, tok = char
    pre = precompute(Dataset.from_list(tiny.preference_rows(4)), UniformReference(), use_cache=False)
    make = lambda **kw: PrecomputedRefDPOTrainer(model, args=config(tmp_path), train_dataset=pre, processing_class=tok, **kw)  # noqa: E731
    with pytest.raises(ValueError, match=r"loss 'cdpo' has no argument 'label_smothing' \(did you mean 'label_smoothing'\?\)"):
        make(loss="cdpo", loss_kwargs={"label_smothing": 0.1})
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 0.5\)"):
        make(loss="robust", loss_kwargs={"label_smoothing": 0.7})
    with pytest.raises(ValueError, match=r"loss_kwargs\['beta'\].*DPOConfig\(beta=\.\.\.\)"):
        make(loss="sigmoid", loss_kwargs={"beta": 0.5})
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean'"):
        make(loss="ipo", loss_kwargs={"reduction": "avg"})
    with pytest.raises(ValueError, match="gamma_beta_ratio must be a finite number"):
        make(loss="simpo", loss_kwargs={"gamma_beta_ratio": float("nan")})


def test_non_dataset_inputs_to_precompute(char):
    """main: ``TypeError: list indices must be integers`` for a plain list of dicts."""
    rows = tiny.preference_rows(3)
    with pytest.raises(TypeError, match=r"got list: wrap .* datasets\.Dataset\.from_list\(rows\)"):
        precompute(rows, UniformReference())
    with pytest.raises(TypeError, match=r"streaming dataset"):
        precompute(IterableDataset.from_generator(lambda: iter(rows)), UniformReference())
    with pytest.raises(TypeError, match=r"Dataset\.from_dict"):
        precompute({k: [r[k] for r in rows] for k in rows[0]}, UniformReference())
    assert precompute(Dataset.from_list(rows), UniformReference(), use_cache=False)[REF_COLUMNS[0]] == [0.0] * 3
