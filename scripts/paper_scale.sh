#!/usr/bin/env bash
# The paper's recipe at its own scale on one node of 8 GPUs (see book/reproduce_paper_scale.md).
#
#   STUDENT=mistral REFERENCE=self scripts/paper_scale.sh            # RQ1: mistral-7b-sft-beta, its own reference
#   STUDENT=tulu2 REFERENCE=llama3 scripts/paper_scale.sh            # RQ3: Llama-3-70B-Instruct as reference
#   STUDENT=mistral REFERENCE=uniform BETAS="100" scripts/paper_scale.sh   # RQ2: posterior probability
#   LAUNCHER=fsdp scripts/paper_scale.sh                             # FSDP instead of DeepSpeed ZeRO-3
#   DRY_RUN=1 scripts/paper_scale.sh                                 # print every step's settings, run nothing
#
# Steps: reference log-probs once (one process, reference spread over the GPUs), then one DPO run per
# beta (accelerate launch, 3 epochs, 32 pairs/step, lr 5e-7, 10% warm-up, best validation loss every
# 500 steps), then AlpacaEval 2 on each selected checkpoint (needs alpaca-eval and OPENAI_API_KEY;
# JUDGE=none only writes the outputs). Needs: pip install 'dpolib[gpu]' and access to the models.
set -euo pipefail
cd "$(dirname "$0")/.."

STUDENT=${STUDENT:-mistral}          # mistral | tulu2
REFERENCE=${REFERENCE:-self}         # self | prior | uniform | mistralv2 | llama3
LAUNCHER=${LAUNCHER:-zero3}          # zero3 | fsdp
OUT=${OUT:-runs/paper}
JUDGE=${JUDGE:-alpaca_eval}          # alpaca_eval | none
PYTHON=${PYTHON:-python}
if [[ -z "${BETAS:-}" ]]; then
  case "$REFERENCE" in
    self) BETAS="0.1 0.05 0.02 0.01 0.005" ;;        # Table 1
    mistralv2|llama3) BETAS="10.0 1.0 0.1 0.01 0.005" ;;  # Table 4
    uniform) BETAS="100.0" ;;                         # Table 3 (the paper reports the optimum only)
    prior) BETAS="0.01" ;;
  esac
fi
CONFIG=configs/accelerate/${LAUNCHER}.yaml
DTYPE=bfloat16; [[ "$LAUNCHER" == fsdp ]] && DTYPE=float32
DRY=(); [[ -n "${DRY_RUN:-}" ]] && DRY=(--dry-run)

"$PYTHON" -m dpolib.hub.paper_recipe precompute --student "$STUDENT" --reference "$REFERENCE" --out "$OUT" "${DRY[@]}"
for BETA in $BETAS; do
  if [[ -n "${DRY_RUN:-}" ]]; then
    "$PYTHON" -m dpolib.hub.paper_recipe train --student "$STUDENT" --reference "$REFERENCE" --beta "$BETA" \
      --out "$OUT" --dtype "$DTYPE" --dry-run
  else
    accelerate launch --config_file "$CONFIG" -m dpolib.hub.paper_recipe train --student "$STUDENT" \
      --reference "$REFERENCE" --beta "$BETA" --out "$OUT" --dtype "$DTYPE"
  fi
  "$PYTHON" -m dpolib.hub.paper_recipe evaluate --run "$OUT/$STUDENT-$REFERENCE-beta$(printf '%g' "$BETA")" \
    --judge "$JUDGE" "${DRY[@]}"
done
