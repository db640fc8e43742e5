#!/usr/bin/env bash
# The whole CPU-world reproduction (World 4): every world seed, every grid, as one schedule of jobs
# (dpolib.experiments.reproduce: each job starts as soon as what it needs is built; no stage barriers).
#   tools/reproduce_cpu.sh [profile] [workers]      (defaults: cpu 2)
# Records go to $DPOLIB_RECORDS/lab (default results/lab); the wall time and each stage's seconds of work
# are written to the world report (results/lab/world_report_<profile>.json, "reproduction_seconds" and
# "reproduction_job_seconds"). Run it from a committed, clean tree: every record's provenance names the
# commit and says whether it was dirty.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-cpu}
workers=${2:-2}
export TQDM_DISABLE=${TQDM_DISABLE:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m dpolib.experiments reproduce --profile "$profile" --workers "$workers"
