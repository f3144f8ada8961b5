#!/usr/bin/env bash
# The GPU table: DeiT-S and Swin-T UperNet 512x512 on CUDA, batch 1/8/32,
# fp32 and fp16 rows, eager then compiled, every reducer, ATME/ToMe with
# prop_attn on and off; writes docs/gpu_benchmark.md naming the device.
# Usage (repository root, on the GPU machine):
#   [WHEELS=dir] [BATCHES="1 8 32"] [PARTS=backbone] [REPEATS=20] \
#       bash tools/deploy/gpu_table.sh
# WHEELS: a folder of wheels to install offline first (the GPU machine has
# no network); without it the current python must have the requirements.
# Not run in this repository's CI (no GPU); checked with `bash -n`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY="${PYTHON:-python}"
if [[ -n "${WHEELS:-}" ]]; then
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" \
    mmengine mmsegmentation mmpretrain mmcv-lite timm ftfy regex
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . || true
"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"'

ADE=configs/ade20k
OUT=docs/gpu_benchmark.md
TMP="$(mktemp -d)"
common=(--device cuda --dtype fp32 fp16 --image-size 512 512
        --batch-sizes ${BATCHES:-1 8 32} --parts ${PARTS:-backbone}
        --repeats "${REPEATS:-20}" --warmup 3)
noprop=model.backbone.token_cfg.prop_attn=False
tome=model.backbone.token_cfg.type=ToMe
deit=(--setting baseline "$ADE/deit-s16_upernet_8xb2-80k_ade20k-512x512.py"
  --setting ATME "$ADE/atme_deit-s16_upernet_8xb2-80k_ade20k-512x512.py"
  --setting ATME-noprop "$ADE/atme_deit-s16_upernet_8xb2-80k_ade20k-512x512.py" "$noprop"
  --setting ToMe "$ADE/atme_deit-s16_upernet_8xb2-80k_ade20k-512x512.py" "$tome"
  --setting ToMe-noprop "$ADE/atme_deit-s16_upernet_8xb2-80k_ade20k-512x512.py" "$tome" "$noprop"
  --setting ATME+CDCP "$ADE/atme-cdcp_deit-s16_upernet_8xb2-80k_ade20k-512x512.py"
  --setting dTPS "$ADE/dtps_deit-s16_upernet_8xb2-80k_ade20k-512x512.py"
  --setting eTPS "$ADE/etps_deit-s16_upernet_8xb2-80k_ade20k-512x512.py"
  --setting SPViT "$ADE/spvit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py")
swin=(--setting Swin-T "$ADE/swin-t_upernet_8xb2-160k_ade20k-512x512.py"
  --setting ATME "$ADE/atme_swin-t_upernet_8xb2-160k_ade20k-512x512.py"
  --setting ATME-noprop "$ADE/atme_swin-t_upernet_8xb2-160k_ade20k-512x512.py" "$noprop"
  --setting ToMe "$ADE/atme_swin-t_upernet_8xb2-160k_ade20k-512x512.py" "$tome"
  --setting ATME+CDCP "$ADE/atme-cdcp_swin-t_upernet_8xb2-160k_ade20k-512x512.py"
  --setting dTPS "$ADE/dtps_swin-t_upernet_8xb2-160k_ade20k-512x512.py"
  --setting eTPS "$ADE/etps_swin-t_upernet_8xb2-160k_ade20k-512x512.py"
  --setting SPViT "$ADE/spvit_swin-t_upernet_8xb2-160k_ade20k-512x512.py")

{
  echo "# GPU benchmark (tools/deploy/gpu_table.sh)"
  echo
  echo "Device: $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')."
  echo "Command: \`bash tools/deploy/gpu_table.sh\` (${common[*]})."
} >"$OUT"
for model in deit swin; do
  for mode in eager compiled; do
    flag=(); [[ $mode == compiled ]] && flag=(--compile)
    declare -n sets="$model"
    md="$TMP/$model-$mode.md"
    # a failing run (e.g. a graph break) is reported in the table file
    if "$PY" tools/analysis/benchmark.py "${sets[@]}" "${common[@]}" \
        "${flag[@]}" --out "$md" >"$TMP/$model-$mode.log" 2>&1; then
      printf '\n## %s, %s\n\n' "$model" "$mode" >>"$OUT"; cat "$md" >>"$OUT"
    else
      printf '\n## %s, %s: FAILED\n\n```\n' "$model" "$mode" >>"$OUT"
      tail -n 15 "$TMP/$model-$mode.log" >>"$OUT"; echo '```' >>"$OUT"
    fi
    unset -n sets
  done
done
echo "wrote $OUT"
