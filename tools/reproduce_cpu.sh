#!/usr/bin/env bash
# The whole CPU-world reproduction (World 4): every world seed, every grid, in dependency order.
#   tools/reproduce_cpu.sh [profile] [workers]      (defaults: cpu 2)
# Records go to $DPOLIB_RECORDS/lab (default results/lab); each stage's wall time is added to the
# world report (results/lab/world_report_<profile>.json, "reproduction_seconds"). Run it from a
# committed, clean tree: every record's provenance names the commit and says whether it was dirty.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-cpu}
workers=${2:-2}
seeds=$(.venv/bin/python -c "from dpolib.world.profiles import get_profile; print(*get_profile('$profile').seeds)")
export TQDM_DISABLE=${TQDM_DISABLE:-1} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=".venv/bin/python -m dpolib.experiments"
$py world --profile "$profile" --workers "$workers"                                   # models, data, rates
$py run --profile "$profile" --grid rq1 --seeds $seeds --engine sweep --workers "$workers"       # RQ1, every world
$py run --profile "$profile" --grid controls --seeds $seeds --engine sweep --workers "$workers"  # on-policy control
for g in rq2 rq3 appendix-e; do                                                         # world 0's sweeps
  $py run --profile "$profile" --grid "$g" --seeds 0 --engine sweep --workers "$workers"
done
rest=$(echo $seeds | cut -s -d' ' -f2-)
if [ -n "$rest" ]; then                                                                 # headline arms, other worlds
  $py run --profile "$profile" --grid seeds --seeds $rest --engine sweep --workers "$workers"
fi
