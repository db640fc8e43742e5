#!/usr/bin/env bash
# Build the book from a fresh clone: create/refresh the environment (tools/setup.sh), execute every chapter at
# the default scale profile (CPU toy scale without a GPU), build strictly (-W -n --keep-going: warnings and broken
# references are errors), check the pages (tools/check_html.py: no stderr, warnings, progress bars, machine paths
# or empty output boxes; HTML builds only) and print where the result is.
#
#   tools/book.sh            reader / instructor build (solutions collapsed)  -> _build/html/index.html
#   tools/book.sh --student  student build, solutions stripped (hide_solutions) -> _build/student/_build/html/index.html
#   tools/book.sh --pdf      PDF through LaTeX (xelatex + latexmk)            -> _build/latex/book.pdf
#                            without LaTeX it says what to install and exits 2 (nothing is built).
#   tools/book.sh --rerun    (with any of the above) execute every chapter again: forget the execution cache and
#                            Sphinx's saved state first. Use it after switching between a CPU and a GPU machine.
# Further arguments go to `jupyter-book build` (e.g. --all to re-read every page).
#
# Chapters are executed through Jupyter Book's cache (_build/.jupyter_cache): an unchanged chapter is not re-run,
# so an unchanged rebuild takes seconds. The cache is keyed on a chapter's code, not on the scale profile, and
# Sphinx's saved state (_build/.doctrees) marks unchanged chapters as up to date: after switching machines
# (CPU <-> GPU) build with --rerun. The status page says which chapters this build executed.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=html
rerun=0
while [ $# -gt 0 ]; do
  case "$1" in
    --student) mode=student; shift ;;
    --pdf) mode=pdf; shift ;;
    --html) shift ;;
    --rerun) rerun=1; shift ;;
    -h|--help) sed -n '2,/^set -e/{/^#/p}' "$0"; exit 0 ;;
    *) break ;;
  esac
done
if [ "$rerun" = 1 ]; then
  echo "[book] --rerun: forgetting the execution cache and the saved build state; every chapter executes again"
  rm -rf _build/.jupyter_cache _build/.doctrees _build/student/_build/.doctrees
fi

if [ "$mode" = pdf ]; then
  missing=()
  for tool in latexmk xelatex; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[book] PDF not built: LaTeX is not installed (missing: ${missing[*]})." >&2
    echo "[book] Debian/Ubuntu (tested): apt-get install -y --no-install-recommends latexmk texlive-xetex texlive-latex-extra \\" >&2
    echo "[book]   texlive-fonts-recommended texlive-fonts-extra texlive-plain-generic fonts-freefont-otf lmodern" >&2
    echo "[book] The HTML book needs no LaTeX: tools/book.sh" >&2
    exit 2
  fi
fi

tools/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The rendered chapters show no progress bars and no third-party import warnings: DPOLIB_BOOK_BUILD=1 makes
# dpolib.profile (imported by every set-up cell) ignore those few warnings (profile.BOOK_WARNING_FILTERS).
export TQDM_DISABLE=${TQDM_DISABLE:-1} DPOLIB_BOOK_BUILD=1 PYDEVD_DISABLE_FILE_VALIDATION=1
unset MPLBACKEND  # chapters embed their figures through the notebook's inline backend
if [ -n "${DPOLIB_PROFILE:-}" ]; then
  echo "[book] ignoring DPOLIB_PROFILE=$DPOLIB_PROFILE: the book is built at the detected profile (cached outputs must match it)"
  unset DPOLIB_PROFILE
fi

JB=(.venv/bin/jupyter-book build . -W -n --keep-going)
start=$SECONDS
# Chapters the execution cache lacks run first, in parallel (one process per core; tools/execute_chapters.py),
# so that the build finds every chapter cached. Skipped when no chapter changed since the cache was last written.
export DPOLIB_BUILD_START=${DPOLIB_BUILD_START:-$(date +%s)}  # the status page counts these executions as this build's
db=_build/.jupyter_cache/global.db
if [ ! -f "$db" ] || [ -n "$(find notebooks -name '*.md' -newer "$db" -print -quit)" ]; then
  .venv/bin/python tools/execute_chapters.py
fi
build_rc=0  # a strict-build failure is reported after the page check below, so that one run shows both
case "$mode" in
  html)
    "${JB[@]}" "$@" || build_rc=$?
    out="$PWD/_build/html/index.html"
    ;;
  student)
    # Same source and execution cache; hide_solutions strips every solution.
    mkdir -p _build
    .venv/bin/python - <<'PY'
import pathlib, yaml
root = pathlib.Path.cwd()
config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
config["sphinx"]["config"]["hide_solutions"] = True
config["sphinx"]["local_extensions"] = {k: str(root / v) for k, v in config["sphinx"]["local_extensions"].items()}
config["execute"]["cache"] = str(root / "_build" / ".jupyter_cache")
config["title"] += " (student edition)"
config["html"]["extra_footer"] = "Student edition: exercises without solutions."
(root / "_build" / "student_config.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
PY
    "${JB[@]}" --config _build/student_config.yml --path-output _build/student "$@" || build_rc=$?
    out="$PWD/_build/student/_build/html/index.html"
    ;;
  pdf)
    "${JB[@]}" --builder pdflatex "$@"
    out=$(ls "$PWD"/_build/latex/*.pdf | head -n 1)
    ;;
esac
check_rc=0  # the pages a reader sees: no stderr, warnings, progress bars, machine paths or empty output boxes
if [ "$mode" != pdf ] && [ -f "$out" ]; then
  .venv/bin/python tools/check_html.py "$(dirname "$out")" || check_rc=$?
fi
if [ "$build_rc" != 0 ]; then
  echo "[book] the strict build failed (exit $build_rc; its warnings are above): file://$out" >&2
  exit "$build_rc"
fi
if [ "$check_rc" != 0 ]; then
  echo "[book] built in $((SECONDS - start)) s, but the pages listed above show what a reader should not see" \
       "(fix it where the output is made): file://$out" >&2
  exit "$check_rc"
fi
echo "[book] built in $((SECONDS - start)) s: file://$out"
