#!/usr/bin/env bash
# The GPU measurements of issue 20 as one prepared run: the step-time profile, LoRA MFU on the
# 1.5b and 1b Llama shapes (with an ablation of the speed levers) and QLoRA memory on the 8b
# shape, each against transformers.Trainer + peft in the same process. Every bench writes
# NAME.json and NAME.md into the output folder; suite.log holds everything printed.
#
#   bash bench/gpu_suite.sh prepare            # here, with a package index: wheels -> .whl/site
#   bash bench/gpu_suite.sh check              # there: imports and versions only (seconds)
#   bash bench/gpu_suite.sh run [OUT] [PARTS]  # there: PARTS = mfu,qlora,profile (default all)
#
# Device budget (15 minutes a session, 10 a command): call `run "" mfu` (about 5-6 minutes on
# an H200), then `run "" qlora,profile` (about 5-6 minutes); both write into the same OUT.
#
# "prepare" installs, for CPython 3.12 on x86-64 Linux, what the GPU image lacks (kubetune's
# pydantic and CEL dependencies, bitsandbytes, liger-kernel) into .whl/site, dropping the
# bitsandbytes binaries for other CUDA/ROCm versions so that the folder stays small enough to
# travel (about 30 MB). .whl/ must be ignored: `echo /.whl/ >> .git/info/exclude`.
# OUT defaults to $OUT (set on the device machine) or bench/results/gpu.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
  "pydantic==2.14.4" "pydantic-core==2.50.5" "annotated-types==0.8.0"
  "typing-inspection==0.4.5" "typing-extensions>=4.16"
  "cel-python==0.5.0" "google-re2==1.1.20251105" "jmespath==1.1.0" "lark==1.3.1"
  "pendulum==3.3.0" "tzdata"
  "bitsandbytes==0.50.2" "liger-kernel>=0.6"
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
  manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

prepare() {
  local args=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp)
  for p in "${PLATFORMS[@]}"; do args+=(--platform "$p"); done
  rm -rf .whl/download .whl/site && mkdir -p .whl/download
  python3 -m pip download "${args[@]}" -d .whl/download "${WHEELS[@]}" || return 1
  python3 -m pip install -q "${args[@]}" --no-compile --target .whl/site .whl/download/*.whl \
    || return 1
  find .whl/site/bitsandbytes -name 'libbitsandbytes_*.so' \
    ! -name '*_cpu.so' ! -name '*_cuda130.so' ! -name '*_cuda132.so' -delete
  rm -rf .whl/download
  du -sh .whl/site
}

environment() {
  export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
  export PYTHONPATH="operator:images:bench${PYTHONPATH:+:$PYTHONPATH}"
  local site=${SUITE_SITE:-.whl/site}  # SUITE_SITE=none: use the interpreter's packages only
  if [ -d "$site" ]; then export PYTHONPATH="$site:$PYTHONPATH"; fi
}

check() {
  environment
  python3 - <<'EOF'
import importlib, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
missing = []
gpu_only = ("liger_kernel", "triton")  # needed for the GPU levers, not for a CPU check
for name in ("pydantic", "celpy", "transformers", "peft", "bitsandbytes", "liger_kernel",
             "triton", "kubetune.api.finetune", "kubetune_workloads.finetune"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '')}")
    except Exception as exc:  # report every missing piece at once
        if name in gpu_only and not torch.cuda.is_available():
            print(f"{name} absent (CPU only: not needed)")
        else:
            missing.append(f"{name}: {exc}")
for line in missing:
    print("MISSING", line)
sys.exit(1 if missing else 0)
EOF
}

bench() {  # NAME SECONDS ARGS...: one bench, bounded, its JSON line kept
  local name=$1 limit=$2
  shift 2
  echo "=== $name $* (limit ${limit}s) $(date -u +%T)"
  timeout "$limit" python3 "bench/$name.py" --out "$OUT_DIR" "$@" "${DEVICE_ARGS[@]}"
  echo "=== $name exit $? $(date -u +%T)"
}

run() {
  OUT_DIR=${1:-${OUT:-bench/results/gpu}}
  DEVICE_ARGS=()  # SUITE_DEVICE=cpu: the same suite on tiny shapes (checks the glue)
  if [ "${SUITE_DEVICE:-cuda}" = cpu ]; then DEVICE_ARGS=(--device cpu); fi
  local parts=${2:-mfu,qlora,profile}
  mkdir -p "$OUT_DIR"
  {
    check || exit 1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    [[ $parts == *mfu* ]] && bench gpu_lora_mfu 420 --shapes 1.5b,1b --steps 15 \
      --variants auto:auto,sdpa:none --workloads cpt,packed \
      --packed-variants auto:auto,sdpa:none,flex_attention:none
    [[ $parts == *qlora* ]] && bench gpu_qlora_memory 330 --shape 8b --steps 5 --batch 4
    [[ $parts == *profile* ]] && bench gpu_profile 200 --shape 1.5b --steps 6
    echo "=== done $(date -u +%T)"
  } 2>&1 | tee -a "$OUT_DIR/suite.log"
}

case "${1:-run}" in
  prepare) prepare ;;
  check) check ;;
  run) shift || true; run "$@" ;;
  *) echo "usage: $0 prepare | check | run [OUT] [profile,mfu,qlora]" >&2; exit 2 ;;
esac
