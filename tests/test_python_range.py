"""``requires-python`` is true: the oldest Python it admits installs dpolib and passes unit tests; 3.12 (Colab's,
the newest) runs every chapter in ``tests/test_colab_emulation.py``.

The oldest-version test is slow (a fresh environment with torch: minutes). That Python elsewhere, e.g. 3.11:
``pyenv install 3.11``, ``uv python install 3.11`` or python.org; or set ``DPOLIB_PYTHON311`` to an interpreter.
3.10 is not admitted: trl 1.16 (the TRL bridge's version) and transformers 5 require Python >= 3.11, which
:func:`test_lower_bound_is_what_the_dependencies_allow` checks against their installed metadata.
"""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_emulation  # noqa: E402

#: A fast subset of the unit tests (no world building, no training of the smoke world).
UNIT_TESTS = ["tests/test_losses.py", "tests/test_layout.py", "tests/test_experiments_runner.py",
              "-k", "not smoke and not interrupted"]


def _requires_python() -> SpecifierSet:
    return SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])


def oldest_python() -> str:
    """The lower bound of ``requires-python`` (``">=3.11,<3.13"`` -> ``"3.11"``)."""
    return next(s.version for s in _requires_python() if s.operator == ">=")


def test_requires_python_admits_colab():
    assert "3.12" in _requires_python()  # Colab's Python, exercised by test_colab_emulation


def test_lower_bound_is_what_the_dependencies_allow():
    """No Python that requires-python admits is refused by trl or transformers (3.10 was, with trl 1.16)."""
    from importlib.metadata import metadata

    from packaging.version import Version

    ours = Version(oldest_python())
    for dist in ("trl", "transformers"):
        theirs = SpecifierSet(metadata(dist)["Requires-Python"] or "")
        assert all(Version(v) in theirs for v in (f"{ours.major}.{ours.minor}", "3.12")), (dist, str(theirs))


@pytest.mark.slow
def test_unit_tests_pass_on_the_oldest_python_allowed(tmp_path):
    oldest = oldest_python()
    try:
        python = colab_emulation.find_python(oldest)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    src = tmp_path / "src"
    colab_emulation.checkout(ROOT, os.environ.get("DPOLIB_EMULATION_REF", "HEAD"), src)
    try:  # pip refuses when a dependency's own requires-python excludes this version: requires-python is false
        exe = colab_emulation.fresh_venv(python, tmp_path / "venv", [colab_emulation.TORCH, f"{src}[test]"])
    except subprocess.CalledProcessError as err:
        pytest.fail(f"dpolib[test] does not install on Python {oldest}, which requires-python admits: {err}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPOLIB_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(DPOLIB_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg", TQDM_DISABLE="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([str(exe), "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNIT_TESTS], cwd=src, env=env,
                          capture_output=True, text=True)
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True).stdout
    assert version.startswith(f"Python {oldest}"), version
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
