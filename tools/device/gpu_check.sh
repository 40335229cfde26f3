#!/usr/bin/env bash
# Runs the GPU-marked tests on a machine with an NVIDIA GPU, from a plain checkout (no install):
# the packages are imported from their source folders. Usage: bash tools/device/gpu_check.sh [pkg ...]
# (default: core data train rllib). Logs go to $OUT (or ./gpu_check_out) when set.
set -u
cd "$(dirname "$0")/../.."
out=${OUT:-gpu_check_out}; mkdir -p "$out"
export PYTHONPATH=$(ls -d packages/*/src | paste -sd:)${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
${PYTHON:-python3} -c 'import sys, torch, grpc; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.device_count(), "grpc", grpc.__version__)'
nvidia-smi -L
df -h /dev/shm | tail -1
status=0
for pkg in "${@:-core data train rllib}"; do
  for p in $pkg; do
    echo "=== $p"
    # -W default: a warning from the device's own library versions is reported, not turned into a failure
    timeout 300 ${PYTHON:-python3} -m pytest "packages/$p/tests" -m gpu -q -rA -p no:cacheprovider -W default \
      --timeout 120 2>&1 | tee "$out/gpu_$p.log" | tail -25
    rc=${PIPESTATUS[0]}; echo "=== $p exit $rc"; [ "$rc" = 0 ] || status=1
  done
done
exit $status
