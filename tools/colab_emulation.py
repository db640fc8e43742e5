#!/usr/bin/env python3
"""Run every chapter as a Colab reader would, offline: fresh Python 3.12, outside the checkout, CPU runtime.

1. The local repository at a commit (default ``HEAD``) is the source the set-up cell fetches from
   (``DPOLIB_BOOK_SOURCE`` / ``DPOLIB_BOOK_REF``, see ``tools/sync_notebooks.py``).
2. A fresh virtual environment with Python 3.12 (Colab's) gets what a Colab runtime has before the
   chapter runs: torch, a Jupyter kernel, and dpolib from that commit installed by pip, which carries
   the package but not its records.
3. Every ``notebooks/*.ipynb`` of that commit is copied into a scratch folder and executed there with
   nbclient, with no CUDA device visible (the ``cpu`` profile is picked by the hardware). The first
   set-up cell fetches the repository into ``./refdpo-book``, installs it and reads its committed records.
   A guard (a ``sitecustomize`` on the kernel's path) makes every training entry point raise and logs the
   call: :data:`GUARDED`. The cache folder is a new empty one, so nothing trained before can be reused.
4. Each notebook's wall time (and its set-up cell's), its printed text and its glued values come back;
   ``--write`` saves the times with provenance to ``results/benchmarks/colab_emulation.json``.

``tests/test_colab_emulation.py`` (slow) runs it and checks the result against the committed records.

Python 3.12 elsewhere: ``pyenv install 3.12``, ``uv python install 3.12`` or python.org / the deadsnakes
PPA; pass ``--python PATH`` or set ``DPOLIB_PYTHON312``.

Usage::

    .venv/bin/python tools/colab_emulation.py [--ref HEAD] [--python PATH] [--scratch DIR] [--write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: torch as the book is built with, named in the same pip command as dpolib (and so trl): otherwise pip
#: may pick another torch release, a multi-GB CUDA download on Linux.
TORCH = "torch==2.13.0"
#: What a Colab runtime has installed before a chapter runs (beside torch and Python itself).
COLAB_BASE = ["ipykernel", "nbclient", "nbformat"]

#: Training entry points the guard replaces by a function that logs the call and raises.
GUARDED = {
    "dpolib.experiments.runner": ("run", "run_grid", "_train"),
    "dpolib.world.pretrain": ("_train", "model_dir", "tokenizer_dir"),
    "transformers.trainer": ("Trainer.__init__",),
}

_GUARD = '''\
"""Written by tools/colab_emulation.py: training entry points raise (and log the call) in this kernel."""
import importlib.abc
import importlib.machinery
import os
import sys

GUARDED = {guarded!r}


def _forbidden(where):
    def forbidden(*args, **kwargs):
        with open(os.environ["DPOLIB_TRAINING_LOG"], "a") as log:
            log.write(where + "\\n")
        raise RuntimeError(where + " was called: the Colab emulation reads committed records and never trains")
    return forbidden


class _Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in GUARDED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_guard(module):
            exec_module(module)
            for dotted in GUARDED[fullname]:
                *owner, name = dotted.split(".")
                target = module
                for part in owner:
                    target = getattr(target, part)
                setattr(target, name, _forbidden(fullname + "." + dotted))

        spec.loader.exec_module = exec_and_guard
        return spec


sys.meta_path.insert(0, _Guard())
'''


def find_python(version: str) -> Path:
    """A ``python<version>`` interpreter: ``$DPOLIB_PYTHON<digits>``, then ``PATH``, then pyenv's versions."""
    override = os.environ.get("DPOLIB_PYTHON" + version.replace(".", ""))
    candidates = [override] if override else []
    candidates.append(shutil.which(f"python{version}"))
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"), reverse=True)
    for candidate in filter(None, candidates):  # a pyenv shim of an inactive version exists but fails: try each
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return Path(candidate)
    raise FileNotFoundError(
        f"no Python {version} found (looked at $DPOLIB_PYTHON{version.replace('.', '')}, PATH and {pyenv}/versions); "
        f"get one with `pyenv install {version}`, `uv python install {version}` or from python.org")


def checkout(source: Path | str, ref: str, into: Path) -> str:
    """Fetch ``ref`` of the repository ``source`` into ``into`` (as the set-up cell does); return its commit."""
    into.mkdir(parents=True, exist_ok=True)
    for step in (["init", "-q"], ["fetch", "-q", "--depth", "1", str(source), ref], ["checkout", "-q", "FETCH_HEAD"]):
        subprocess.run(["git", "-C", str(into), *step], check=True)
    return subprocess.run(["git", "-C", str(into), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def fresh_venv(python: Path, where: Path, packages: list[str]) -> Path:
    """A new virtual environment at ``where`` with ``packages`` installed by one pip command; its python."""
    subprocess.run([str(python), "-m", "venv", str(where)], check=True)
    exe = where / "bin" / "python"
    subprocess.run([str(exe), "-m", "pip", "install", "-q", *packages], check=True)
    return exe


def emulate(ref: str = "HEAD", python: Path | None = None, scratch: Path | None = None,
            source: Path = ROOT) -> dict:
    """Run the emulation (steps 1-4 of the module docstring); return what :func:`_execute` reports, plus
    ``commit``, ``python``, ``install_s``, ``training_calls`` (the guard's log) and ``written`` (files the
    chapters added or changed under the clone's ``results/``, figures aside, or in the cache)."""
    python = python or find_python("3.12")
    scratch = Path(scratch or tempfile.mkdtemp(prefix="colab-emulation-"))
    src, run_dir, cache, guard = (scratch / n for n in ("src", "run", "cache", "guard"))
    for d in (run_dir, cache, guard):
        d.mkdir(parents=True, exist_ok=True)
    commit = checkout(source, ref, src)
    t = time.perf_counter()
    exe = fresh_venv(python, scratch / "venv", [TORCH, str(src), *COLAB_BASE])
    install_s = time.perf_counter() - t
    (guard / "sitecustomize.py").write_text(_GUARD.format(guarded=GUARDED))
    log = scratch / "training_calls.log"
    notebooks = sorted((src / "notebooks").glob("*.ipynb"))
    for nb in notebooks:
        shutil.copy(nb, run_dir / nb.name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DPOLIB_", "VIRTUAL_ENV", "PYTHON", "JUPYTER", "MPLBACKEND"))}
    env.update(
        PATH=f"{exe.parent}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(guard),
        DPOLIB_BOOK_SOURCE=str(source), DPOLIB_BOOK_REF=commit, DPOLIB_CACHE=str(cache),
        DPOLIB_TRAINING_LOG=str(log), CUDA_VISIBLE_DEVICES="", MPLBACKEND="Agg", TQDM_DISABLE="1",
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
    )
    out = scratch / "executed.json"
    subprocess.run([str(exe), __file__, "_execute", str(run_dir), str(out), *[n.name for n in notebooks]],
                   env=env, check=True)
    report = json.loads(out.read_text())
    clone = run_dir / "refdpo-book"
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain", "--untracked-files=all", "results"],
                            capture_output=True, text=True).stdout.splitlines() if clone.exists() else []
    written = [line[3:] for line in status if not line[3:].startswith("results/figures/")]
    written += [str(p.relative_to(scratch)) for p in cache.rglob("*") if p.is_file()]
    report.update(commit=commit, python=str(python), install_s=install_s, scratch=str(scratch),
                  training_calls=log.read_text().split() if log.exists() else [], written=written,
                  fetched=clone.exists())
    return report


def _execute(run_dir: Path, out: Path, names: list[str]) -> None:
    """Inside the fresh environment: execute each notebook in ``run_dir`` in order; write what happened."""
    import platform

    import nbclient
    import nbformat

    notebooks = {}
    for name in names:
        nb = nbformat.read(run_dir / name, as_version=4)
        client = nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                                         resources={"metadata": {"path": str(run_dir)}})
        t, error = time.perf_counter(), None
        try:
            client.execute()
        except Exception as err:  # noqa: BLE001 -- reported, and the test fails on it
            error = f"{type(err).__name__}: {err}"[-4000:]
        seconds = time.perf_counter() - t
        text, glued, cell_s = [], {}, []
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            times = cell.metadata.get("execution", {})
            if "shell.execute_reply" in times and "iopub.execute_input" in times:
                start, end = (dt.datetime.fromisoformat(times[k].replace("Z", "+00:00"))
                              for k in ("iopub.execute_input", "shell.execute_reply"))
                cell_s.append((end - start).total_seconds())
            for o in cell.get("outputs", []):
                if o.output_type == "stream" and o.name == "stdout":
                    text.append(o.text)
                glue_name = o.get("metadata", {}).get("scrapbook", {}).get("name")
                if glue_name:  # myst-nb's glue: data under "<mime prefix>text/plain"
                    glued[glue_name] = next((v for k, v in o.get("data", {}).items() if k.endswith("text/plain")), None)
        notebooks[Path(name).stem] = {"seconds": seconds, "setup_seconds": cell_s[0] if cell_s else None,
                                      "error": error, "stdout": "".join(text), "glued": glued}
    out.write_text(json.dumps({"notebooks": notebooks, "runtime": {
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "torch": __import__("importlib.metadata").metadata.version("torch")}}, indent=1))


def write_benchmark(report: dict) -> Path:
    """Save each notebook's emulated-Colab time with provenance: ``results/benchmarks/colab_emulation.json``."""
    sys.path.insert(0, str(ROOT))
    from dpolib import paths
    from dpolib.provenance import atomic_write_json, provenance

    record = {
        "what": "each notebooks/*.ipynb executed as on a Colab CPU runtime: fresh venv outside the checkout, the "
                "set-up cell fetching the repository at `emulated_commit`, committed records read (no training)",
        "command": ".venv/bin/python tools/colab_emulation.py --write",
        "emulated_commit": report["commit"],
        "runtime": report["runtime"],
        "install_s": round(report["install_s"], 1),
        "seconds": {k: round(v["seconds"], 1) for k, v in report["notebooks"].items()},
        "setup_cell_seconds": {k: round(v["setup_seconds"] or 0, 1) for k, v in report["notebooks"].items()},
        "note": "the first notebook's set-up cell fetches and installs the repository; the others find it",
        "provenance": provenance(),
    }
    return atomic_write_json(paths.benchmarks_root() / "colab_emulation.json", record)


def main(argv=None) -> int:
    if argv is None and sys.argv[1:2] == ["_execute"]:
        _execute(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="HEAD", help="the commit, branch or tag of the local repository to run")
    parser.add_argument("--python", type=Path, help="a Python 3.12 interpreter (default: found)")
    parser.add_argument("--scratch", type=Path, help="the scratch folder (default: a new temporary one)")
    parser.add_argument("--write", action="store_true", help="save the times to results/benchmarks/colab_emulation.json")
    args = parser.parse_args(argv)
    report = emulate(args.ref, args.python, args.scratch)
    for name, nb in report["notebooks"].items():
        print(f"{name:28s} {nb['seconds']:7.1f} s (set-up cell {nb['setup_seconds'] or 0:5.1f} s)"
              + (f"  ERROR {nb['error'][:300]}" if nb["error"] else ""))
    print(f"commit {report['commit'][:12]}, Python {report['runtime']['python']}, install {report['install_s']:.0f} s; "
          f"training calls: {report['training_calls'] or 'none'}; files written: {report['written'] or 'none'}")
    if args.write:
        print("wrote", write_benchmark(report))
    failed = any(nb["error"] for nb in report["notebooks"].values()) or report["training_calls"] or report["written"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
