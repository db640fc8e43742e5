"""Every committed record names a clean commit that git still has (the reproducibility standard).

A record (run records, world reports, compatibility, exact and theory records, benchmarks) carries
the commit of the code that wrote it (:func:`dpolib.provenance.git_commit`): ``"<sha>"``, or
``"<sha>+dirty"`` when tracked files had uncommitted changes (older benchmarks wrote ``"-dirty"``),
or ``"unknown"`` outside a checkout. A dirty or unknown commit cannot be checked out again, and a
commit that is not in the history (rebased away, a sha from another clone) cannot either, so no
committed record may carry one. ``results/lab/archive/**`` is exempt: superseded worlds kept as
history, each README saying how its records were made.

The commit sits at ``provenance.git_commit`` (records, compatibility, exact/theory records,
benchmarks) or at the top-level ``git_commit`` (world reports); :func:`commits_in` finds every
``git_commit`` key at any depth. The check needs the full history: in a shallow clone, or without
git or a checkout, the committed-records test is skipped with the reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dpolib.paths import REPO_ROOT

#: Committed results that are history, not reproducible records (each folder's README says why).
EXEMPT = ("results/lab/archive/",)
#: A full or abbreviated commit sha.
SHA = re.compile(r"[0-9a-f]{7,40}")


def _git(*args: str, cwd: Path = REPO_ROOT, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=60)


def history_unavailable(root: Path = REPO_ROOT) -> str | None:
    """Why the history cannot be checked here (no git, not a checkout, a shallow clone), or ``None``."""
    if shutil.which("git") is None:
        return "git is not installed"
    inside = _git("rev-parse", "--is-inside-work-tree", cwd=root)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return f"{root} is not a git checkout"
    shallow = _git("rev-parse", "--is-shallow-repository", cwd=root)
    if shallow.returncode != 0 or shallow.stdout.strip() != "false":
        return "a shallow clone: the commits that wrote the records may be missing from its history"
    return None


def commits_in(data, where: str = "") -> Iterator[tuple[str, object]]:
    """Every ``git_commit`` value in a JSON object, with its dotted location (``provenance.git_commit``)."""
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{where}.{key}" if where else key
            if key == "git_commit":
                yield here, value
            else:
                yield from commits_in(value, here)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from commits_in(value, f"{where}[{i}]")


def git_has_commit(sha: str, root: Path = REPO_ROOT) -> bool:
    """Whether ``sha`` names a commit in the repository at ``root`` (``git cat-file -e <sha>^{commit}``)."""
    return _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=root).returncode == 0


def problems(data, has_commit: Callable[[str], bool]) -> list[str]:
    """What is wrong with one record's provenance, as ``"<location> = <value> (<why>)"`` strings.

    A JSON without a ``provenance`` block or a ``git_commit`` is not a record and has no problem;
    a ``provenance`` block without a ``git_commit`` is one.
    """
    found = list(commits_in(data))
    if not found:
        has_provenance = isinstance(data, dict) and isinstance(data.get("provenance"), dict)
        return ["provenance has no git_commit"] if has_provenance else []
    out = []
    for where, value in found:
        commit = str(value).strip()
        if commit.endswith(("+dirty", "-dirty")):
            why = "written from a dirty tree"
        elif commit in ("", "unknown") or not SHA.fullmatch(commit):
            why = "no commit"
        elif not has_commit(commit):
            why = "not a commit in this repository's history"
        else:
            continue
        out.append(f"{where} = {value!r} ({why})")
    return out


def committed_json(root: Path = REPO_ROOT) -> list[str]:
    """The JSON files under ``results/`` that git tracks, less :data:`EXEMPT`, sorted."""
    listed = _git("ls-files", "-z", "--", "results", cwd=root)
    assert listed.returncode == 0, listed.stderr
    names = [n for n in listed.stdout.split("\0") if n.endswith(".json")]
    return sorted(n for n in names if not n.startswith(EXEMPT))


def offenders(root: Path = REPO_ROOT, has_commit: Callable[[str], bool] | None = None) -> list[str]:
    """``"<file>: <problem>"`` for every committed record whose commit is dirty, unknown or absent."""
    known: dict[str, bool] = {}

    def cached(sha: str) -> bool:
        if sha not in known:
            known[sha] = (has_commit or (lambda s: git_has_commit(s, root)))(sha)
        return known[sha]

    out = []
    for name in committed_json(root):
        path = root / name
        if not path.exists():  # deleted in the work tree, not yet committed
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            out.append(f"{name}: unreadable ({type(err).__name__}: {err})")
            continue
        out.extend(f"{name}: {p}" for p in problems(data, cached))
    return out


def test_committed_records_name_clean_commits_in_history():
    why = history_unavailable()
    if why:
        pytest.skip(f"cannot check record provenance against git: {why}")
    found = offenders()
    assert not found, (
        f"{len(found)} committed record(s) cannot be reproduced from a commit: rerun each from a clean "
        "committed tree (git status clean, HEAD pushed), or archive it with a README under results/lab/archive/:\n  "
        + "\n  ".join(found)
    )


def test_committed_records_are_found():
    """The check reads something: the benchmark and smoke records are tracked JSON files."""
    if history_unavailable():
        pytest.skip("not a full git checkout")
    names = committed_json()
    assert any(n.startswith("results/benchmarks/") for n in names)
    assert not any(n.startswith(EXEMPT) for n in names)


def test_checker_flags_dirty_unknown_and_absent_commits():
    """The checker can fail: a dirty record, an unknown commit and a sha git does not have are all named."""
    why = history_unavailable()
    if why:
        pytest.skip(why)
    head = _git("rev-parse", "HEAD").stdout.strip()
    absent = "0123456789abcdef0123456789abcdef01234567"
    assert git_has_commit(head) and not git_has_commit(absent)
    clean = {"config": {}, "provenance": {"git_commit": head}}
    assert problems(clean, git_has_commit) == []
    assert problems({"config": {}}, git_has_commit) == []  # not a record
    assert problems({"provenance": {"date": "x"}}, git_has_commit) == ["provenance has no git_commit"]
    cases = {
        f"{head}+dirty": "dirty tree",
        f"{head}-dirty": "dirty tree",
        "unknown": "no commit",
        absent: "not a commit in this repository's history",
    }
    for commit, why in cases.items():
        record = {"config": {}, "provenance": {"git_commit": commit}}
        (found,) = problems(record, git_has_commit)
        assert found.startswith("provenance.git_commit = ") and why in found, found
    report = {"profile": {"name": "cpu"}, "git_commit": f"{head}+dirty"}  # a world report: top-level commit
    assert problems(report, git_has_commit) == [f"git_commit = '{head}+dirty' (written from a dirty tree)"]


def test_offenders_names_the_files(tmp_path):
    """On a synthetic checkout: a dirty record and one from an absent commit are listed; the archive is not."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    assert _git("init", "-q", cwd=tmp_path).returncode == 0
    ident = ["-c", "user.name=t", "-c", "user.email=t@t"]
    (tmp_path / "README").write_text("x\n")
    _git("add", "README", cwd=tmp_path)
    assert _git(*ident, "commit", "-q", "-m", "init", cwd=tmp_path).returncode == 0
    head = _git("rev-parse", "HEAD", cwd=tmp_path).stdout.strip()
    files = {
        "results/lab/smoke/clean.json": {"provenance": {"git_commit": head}},
        "results/lab/smoke/dirty.json": {"provenance": {"git_commit": f"{head}+dirty"}},
        "results/benchmarks/absent.json": {"provenance": {"git_commit": "f" * 40}},
        "results/lab/world_report_x.json": {"git_commit": "unknown"},
        "results/lab/archive/old/cpu/dirty.json": {"provenance": {"git_commit": f"{head}+dirty"}},
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(data))
        _git("add", name, cwd=tmp_path)
    found = offenders(tmp_path)
    assert [f.split(":")[0] for f in found] == [
        "results/benchmarks/absent.json", "results/lab/smoke/dirty.json", "results/lab/world_report_x.json"]
