#!/usr/bin/env bash
# The whole easel-emoji training recipe, from nothing to the shipped folder,
# in one command (issue 7, point 3). Every phase resumes: run it again after
# an interruption and it continues from the last checkpoint of the phase it
# was in; a finished phase is skipped.
#
#   bash tools/emoji/recipe.sh [CACHE] [OUT_MODEL]
#
# CACHE (default .cache) holds the data, checkpoints and the phase-1
# export, all git-ignored (or any path you pass); OUT_MODEL (default models/easel-emoji)
# receives the exported UNet. Needs the Python environment of
# models/easel-emoji/README.md in $PY (default .venv/bin/python) and npm.
#
# The shipped weights were made in two phases, because the first training
# session ran out of time and the second continued from its EMA:
#   1. 4,118 steps from scratch (lr 5e-4, warm-up 300, linear decay from
#      step 3,000 towards 5e-5 at 4,300), exported in f16;
#   2. from that f16 EMA: a new optimiser and EMA, lr 4e-4 after a
#      100-step warm-up, constant to step 4,800, then a linear decay to
#      4e-5 at step 6,000, where it stops.
# Each phase's learning rate, data order, caption choice, timesteps and noise
# are pure functions of the seed and the step, so a rerun repeats them; the
# weights agree up to the floating-point nondeterminism of PyTorch's CPU
# kernels (thread count).
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE="${1:-.cache}"
OUT="${2:-models/easel-emoji}"
PY="${PY:-.venv/bin/python}"
THREADS="${THREADS:-2}"
DATA="$CACHE/emoji/emoji-32"

finished() { # checkpoint $1 has reached step $2
  [ -f "$1" ] && "$PY" -c "import sys, torch; sys.exit(0 if torch.load(sys.argv[1], map_location='cpu')['step'] >= int(sys.argv[2]) else 1)" "$1" "$2"
}

[ -f "$DATA.npz" ] || "$PY" tools/emoji/fetch_data.py --cache "$CACHE/emoji" --res 32

# Phase 1: from scratch.
P1="$CACHE/recipe-phase1"
if ! finished "$P1/ckpt.pt" 4118; then
  "$PY" tools/emoji/train.py --data "$DATA" --out "$P1" --threads "$THREADS" --resume \
    --lr 5e-4 --warmup 300 --lr-decay-from 3000 --lr-decay-to 4300 --lr-min 5e-5 --max-steps 4118
fi
finished "$P1/ckpt.pt" 4118 || { echo "phase 1 stopped before step 4118; run again to continue" >&2; exit 1; }
# Phase 2 starts from phase 1's export (its EMA rounded to f16), as it did.
E1="$CACHE/recipe-phase1-export"
[ -f "$E1/unet/diffusion_pytorch_model.safetensors" ] || "$PY" tools/emoji/export.py --ckpt "$P1/ckpt.pt" --out "$E1"

# Phase 2: continue from phase 1's f16 EMA.
P2="$CACHE/recipe-phase2"
if ! finished "$P2/ckpt.pt" 6000; then
  "$PY" tools/emoji/train.py --data "$DATA" --out "$P2" --threads "$THREADS" --resume --init-from "$E1" \
    --lr 4e-4 --warmup 100 --lr-decay-from 4800 --lr-decay-to 6000 --lr-min 4e-5 --max-steps 6000
fi
finished "$P2/ckpt.pt" 6000 || { echo "phase 2 stopped before step 6000; run again to continue" >&2; exit 1; }
"$PY" tools/emoji/export.py --ckpt "$P2/ckpt.pt" --out "$OUT"
echo "exported to $OUT; next: the pHash index, the scorer and easel eval (models/easel-emoji/README.md)"
