"""Where and at what scale a chapter runs: the scale profile, the environment, the output folder.

Every executable chapter starts with the same set-up cell (written by
``tools/sync_notebooks.py``), which calls :func:`detect` and prints
:func:`describe`. Three profiles exist:

``smoke``
    Seconds per chapter. Chosen only on request (``DPOLIB_PROFILE=smoke``); the
    notebook test in CI uses it so that a broken chapter fails in minutes.
``cpu``
    The default without a GPU: toy scale, minutes per chapter on a laptop CPU.
    The book is built at this scale.
``gpu``
    The default when ``torch.cuda.is_available()``: larger models and sweeps.

``DPOLIB_PROFILE`` (``smoke``, ``cpu`` or ``gpu``) overrides the detection.
What each profile means for an experiment (steps, model size, sweep grid) is
decided by the experiment code, not here.

Inside the book build (``tools/book.sh`` sets ``DPOLIB_BOOK_BUILD=1`` and ``TQDM_DISABLE=1``
for the chapters it executes), importing this module installs :func:`quiet_book_build`'s
warning filters, so that the rendered pages show no warning that a third-party import raises
(``tools/check_html.py`` fails the build on one). Progress bars are for long work at a
terminal; :func:`progress_enabled` says whether to draw one.
"""

from __future__ import annotations

import importlib
import os
import platform
import warnings
from pathlib import Path

__all__ = ["PROFILES", "ENV_VAR", "BOOK_BUILD_VAR", "BOOK_WARNING_FILTERS", "detect", "describe", "environment",
           "output_dir", "progress_enabled", "quiet_book_build"]

#: The scale profiles, smallest first.
PROFILES = ("smoke", "cpu", "gpu")

#: Environment variable that overrides the detected profile.
ENV_VAR = "DPOLIB_PROFILE"

#: Environment variable that ``tools/book.sh`` sets (to ``1``) for the chapters the book build executes.
BOOK_BUILD_VAR = "DPOLIB_BOOK_BUILD"

#: The warnings that :func:`quiet_book_build` ignores, each as (category, message regex, module regex, why).
#: Each is raised inside a third-party package and says nothing about a chapter's results; everything else
#: still shows (and fails the build's HTML check).
BOOK_WARNING_FILTERS = (
    ("tqdm.std.TqdmWarning", r"IProgress not found", r"tqdm\.",
     "tqdm.auto, imported by transformers and datasets, asks for ipywidgets in a notebook kernel; "
     "the build draws no progress bars (TQDM_DISABLE=1), so none is needed"),
    ("tqdm.std.TqdmExperimentalWarning", r"Using `tqdm\.autonotebook\.tqdm` in notebook mode", "",
     "tqdm.autonotebook, imported directly by a library where ipywidgets is installed, announces its notebook "
     "mode; the module raising it is the importing library's, so it is matched by its category and message"),
    ("FutureWarning", r"`gradient_checkpointing(_kwargs)?` is deprecated", r"transformers\.training_args\Z",
     "transformers 5 renamed TrainingArguments.gradient_checkpointing, which dpolib.trl_bridge still passes; "
     "the old name still works (drop this filter once trl_bridge uses activation_checkpointing)"),
)

_MEANING = {
    "smoke": "smoke scale, seconds per chapter (only checks that it runs)",
    "cpu": "CPU toy scale, minutes per chapter",
    "gpu": "GPU scale, larger models and longer runs",
}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # dpolib depends on torch, but detect() must not be the place that fails
        return False
    return bool(torch.cuda.is_available())


def detect() -> str:
    """The scale profile for this run: ``"smoke"``, ``"cpu"`` or ``"gpu"``.

    ``DPOLIB_PROFILE`` wins when set; otherwise ``"gpu"`` if CUDA is available, else ``"cpu"``.

    Raises:
        ValueError: ``DPOLIB_PROFILE`` is set to something other than a known profile.
    """
    requested = os.environ.get(ENV_VAR, "").strip().lower()
    if requested:
        if requested not in PROFILES:
            raise ValueError(
                f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a scale profile; use one of {', '.join(PROFILES)} "
                f"or unset {ENV_VAR} to pick 'gpu' or 'cpu' from the hardware."
            )
        return requested
    return "gpu" if _cuda_available() else "cpu"


def environment() -> dict[str, str]:
    """Versions and device of this run, for the chapter's set-up cell and the status page.

    Returns:
        A dict with keys ``python``, ``platform``, ``dpolib``, ``torch`` and ``device``
        (the CUDA device name, or ``"cpu"``).
    """
    from dpolib import __version__

    env = {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "dpolib": __version__,
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except ImportError:
        env["torch"] = "not installed"
        env["device"] = "cpu"
    return env


def describe(profile: str | None = None) -> str:
    """One paragraph saying which profile was picked, why, and in which environment.

    Args:
        profile: a profile name; ``None`` means :func:`detect`.
    """
    profile = detect() if profile is None else profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    env = environment()
    if os.environ.get(ENV_VAR, "").strip():
        why = f"set by {ENV_VAR}"
    elif profile == "gpu":
        why = f"a GPU was found: {env['device']}"
    else:
        why = "no GPU was found"
    return (
        f"Scale profile: {profile} ({why}): {_MEANING[profile]}.\n"
        f"Environment: Python {env['python']}, dpolib {env['dpolib']}, torch {env['torch']}, device {env['device']}.\n"
        f"Override with {ENV_VAR}={'|'.join(PROFILES)}."
    )


def _repository_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "dpolib" / "__init__.py").is_file() and (folder / "results").is_dir():
            return folder
    return None


def output_dir(*parts: str) -> Path:
    """The folder a chapter writes results and figures to, created if missing.

    Inside a checkout of the book (found by walking up from the working directory)
    this is ``<checkout>/results/<parts...>``, next to the committed results; elsewhere
    (e.g. on Colab) it is ``./results/<parts...>``. ``DPOLIB_RESULTS`` overrides the base.

    Example:
        ``plotting.save(fig, profile.output_dir("figures") / "paper_table1")``
    """
    base = os.environ.get("DPOLIB_RESULTS")
    if base:
        root = Path(base)
    else:
        checkout = _repository_root(Path.cwd().resolve())
        root = checkout / "results" if checkout is not None else Path("results")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw a progress bar: ``requested``, unless ``TQDM_DISABLE`` is set (to anything but ``0``/``false``).

    tqdm reads ``TQDM_DISABLE`` only when its caller passes no ``disable=``; a caller that passes
    ``disable=not progress_enabled(progress)`` keeps bars off in the book build and the tests, which set it.
    """
    flag = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return requested and flag in ("", "0", "false", "no")


def quiet_book_build() -> None:
    """Ignore the third-party warnings of :data:`BOOK_WARNING_FILTERS` in this process.

    Called on import of this module when ``DPOLIB_BOOK_BUILD=1`` (every chapter's set-up cell imports
    it before anything else), and only then: a reader's own run shows every warning. Each filter is
    narrow (one category, one message, one raising module where that is fixed), never a blanket ignore.
    """
    for category_name, message, module, _why in BOOK_WARNING_FILTERS:
        category = _warning_class(category_name)
        if category is not None:
            warnings.filterwarnings("ignore", message=message, category=category, module=module)


def _warning_class(name: str) -> type[Warning] | None:
    """The warning class ``name`` (a builtin, or ``package.module.Class``), or ``None`` if its package is absent."""
    module_name, _, class_name = name.rpartition(".")
    try:
        module = importlib.import_module(module_name or "builtins")
    except ImportError:
        return None
    return getattr(module, class_name)


if os.environ.get(BOOK_BUILD_VAR) == "1":
    quiet_book_build()


if __name__ == "__main__":  # python -m dpolib.profile
    print(describe())
