"""Provenance for every result record, and the safe way to write any file the project keeps.

Every number in the book comes from a record carrying the :func:`provenance`
block, so a reader can tell which code, which machine and which library versions
produced it.

Files (records, reference caches, saved policies) are written so that an
interruption never leaves a half-written file where a reader looks:

* :func:`atomic_write_bytes` / :func:`write_json` write a temporary sibling,
  ``fsync`` it and ``os.replace`` it over the target (atomic on POSIX), so a reader
  sees the old file or the new one, never a mix.
* :func:`atomic_write_json` also stores a checksum *inside* the file: a top-level
  field ``"_sha256"`` holding the SHA-256 of the object's canonical JSON
  (``sort_keys``, compact separators) without that field. :func:`read_json_checked`
  recomputes it and raises :class:`CorruptFileError` (naming the file and what is
  wrong) on unreadable JSON, a missing checksum or a mismatch; :func:`read_json`
  also verifies the checksum when one is present and drops the field.
* :func:`quarantine` renames a damaged file or folder to ``<name>.corrupt`` (then
  ``.corrupt.1``, ...) and warns once with a :class:`CorruptFileWarning`, so the
  next run recomputes instead of failing on it again.
* :func:`file_lock` is a cross-process lock (``fcntl.flock`` on ``<path>.lock``) for
  writers that must not compute the same file twice at once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

from .paths import REPO_ROOT

__all__ = [
    "git_commit",
    "library_versions",
    "device_name",
    "cpu_model",
    "provenance",
    "stable_hash",
    "write_json",
    "read_json",
    "CorruptFileError",
    "CorruptFileWarning",
    "CHECKSUM_FIELD",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_json_checked",
    "quarantine",
    "file_lock",
]

#: The top-level field in which :func:`atomic_write_json` stores the file's checksum.
CHECKSUM_FIELD = "_sha256"

_REPO = REPO_ROOT


def git_commit() -> str:
    """The repository's HEAD commit ("+dirty" when tracked files changed), or "unknown" outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO, capture_output=True, text=True, timeout=10
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("dpolib", "torch", "transformers", "trl", "datasets", "accelerate", "numpy", "tokenizers"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()} x{os.cpu_count()} (torch threads {torch.get_num_threads()})"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s "model name"; the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def provenance(**extra: Any) -> dict:
    """The provenance block: commit (and whether the tree was dirty), versions, device, CPU model and threads,
    host, UTC time, plus ``extra`` (e.g. wall times)."""
    import torch

    commit = git_commit()
    return {
        "git_commit": commit,
        "git_dirty": commit.endswith("+dirty"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": library_versions(),
        "device": device_name(),
        "platform": platform.platform(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }


def stable_hash(obj: Any, n: int = 16) -> str:
    """A hash of a JSON-serialisable object that is stable across runs and machines."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


class CorruptFileError(ValueError):
    """A file that exists but cannot be used: unreadable, truncated, or failing its checksum.

    Attributes:
        path: the file.
        reason: what is wrong, in words.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CorruptFileWarning(UserWarning):
    """A damaged file was moved aside (see :func:`quarantine`) and will be rebuilt."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary sibling, ``fsync``, then ``os.replace``.

    Creates missing folders. Concurrent writers of one path each write their own
    temporary file; the last rename wins and no reader ever sees a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def _checksum(obj: Any) -> str:
    # Hash what a reader will load back (tuples become lists, keys strings), so writer and reader agree.
    return hashlib.sha256(_canonical(json.loads(_canonical(obj)))).hexdigest()


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (temp file + ``fsync`` + rename), creating folders. No checksum (see :func:`atomic_write_json`)."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


def atomic_write_json(path: str | os.PathLike, obj: dict) -> Path:
    """Write a JSON object atomically with its SHA-256 in the top-level field ``"_sha256"``.

    The checksum covers the object's canonical JSON without that field; read the
    file back with :func:`read_json_checked` (or :func:`read_json`).

    Raises:
        TypeError: ``obj`` is not a dict (the checksum lives in a top-level field).
        ValueError: ``obj`` already has a ``"_sha256"`` key.
    """
    if not isinstance(obj, dict):
        raise TypeError(f"atomic_write_json writes a JSON object (dict), got {type(obj).__name__}")
    if CHECKSUM_FIELD in obj:
        raise ValueError(f"the key {CHECKSUM_FIELD!r} is reserved for the checksum")
    text = json.dumps({**obj, CHECKSUM_FIELD: _checksum(obj)}, indent=1, sort_keys=True, default=str) + "\n"
    return atomic_write_bytes(path, text.encode())


def _load_json(path: Path) -> Any:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise CorruptFileError(path, "the file is empty (an interrupted write?)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptFileError(path, f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}; truncated?)") from None


def _verified(path: Path, obj: Any, require: bool) -> Any:
    if not isinstance(obj, dict) or CHECKSUM_FIELD not in obj:
        if require:
            raise CorruptFileError(path, f"no {CHECKSUM_FIELD!r} checksum field (not written by atomic_write_json?)")
        return obj
    obj = dict(obj)
    stored = obj.pop(CHECKSUM_FIELD)
    actual = _checksum(obj)
    if stored != actual:
        raise CorruptFileError(path, f"checksum mismatch (stored {str(stored)[:16]}..., content {actual[:16]}...): the content was changed or damaged")
    return obj


def read_json_checked(path: str | os.PathLike) -> dict:
    """Read a file written by :func:`atomic_write_json` and verify its checksum.

    Returns:
        The object, without the ``"_sha256"`` field.

    Raises:
        FileNotFoundError: no such file.
        CorruptFileError: empty, not JSON, no checksum, or a checksum mismatch (``.path``, ``.reason``).
    """
    path = Path(path)
    return _verified(path, _load_json(path), require=True)


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON; if the file carries a ``"_sha256"`` checksum it is verified and dropped.

    Raises:
        CorruptFileError: (a ``ValueError``) the file is empty, not JSON, or fails its checksum.
    """
    path = Path(path)
    return _verified(path, _load_json(path), require=False)


def quarantine(path: str | os.PathLike, reason: str | None = None) -> Path:
    """Move a damaged file or folder aside to ``<name>.corrupt`` (``.corrupt.1``, ... if taken) and warn once.

    The warning (a :class:`CorruptFileWarning`) names the file, the reason and the
    new name, so the damage is visible once and the next run rebuilds the file.

    Returns:
        The new path.
    """
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    os.replace(path, target)
    why = f" ({reason})" if reason else ""
    warnings.warn(
        f"{path} is damaged{why}; moved it aside to {target.name} and rebuilding it", CorruptFileWarning, stacklevel=2
    )
    return target


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive cross-process lock for ``path`` (``fcntl.flock`` on ``<path>.lock``).

    Use it around "check, compute, write" so that concurrent workers compute a
    file once: the second waits, then finds the first one's result. The lock is
    released when the block exits or the process dies. POSIX only.

    Yields:
        The lock file's path.
    """
    import fcntl

    lock = Path(path)
    lock = lock.with_name(lock.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield lock
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
