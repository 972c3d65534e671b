#!/usr/bin/env bash
# Everything worth measuring on a lent GPU, in one call of under ~9 minutes on an H100:
#   A. the three 20-epoch recipes of docs/results.md's MNIST table (default DCGAN, seed-faithful DCGAN,
#      the tutorial's MLP GAN), run side by side on the one GPU (eager);
#   B. the default 20-epoch recipe alone with train.compile=true, timed end to end;
#   C. bench/throughput.py at several batch sizes and precisions, compile off and on, and the host CPU
#      at batch 64 in fp32 and bf16 (one thread).
# Then bench/gpu_report.py writes RESULTS/gpu-<card>-<date>.json and .md.
#
#   bash bench/gpu.sh RESULTS_DIR DATA_ROOT [SECONDS]
#
# SECONDS (default 500) is a budget: parts of C that would start after it are skipped and listed as such.
# Each command has its own timeout, and a failure is logged and skipped, so one bad part costs only itself.
# A dry run of the script itself on a CPU (minutes, numbers meaningless):
#   DEVICE=cpu TRAIN_EXTRA="train.max_steps=40" BENCH_EXTRA="--windows 1 --steps 2 --warmup 1" bash bench/gpu.sh /tmp/r DATA
set -uo pipefail
RESULTS=${1:?usage: bench/gpu.sh RESULTS_DIR DATA_ROOT [SECONDS]}
DATA=${2:?usage: bench/gpu.sh RESULTS_DIR DATA_ROOT [SECONDS]}
BUDGET=${3:-500}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
PARTS=${PARTS:-ABC}  # which of A, B, C to run (a short lease: PARTS=BC)
B_LIMIT=${B_LIMIT:-}  # seconds for B; default: the budget's remainder plus 120
read -r -a TRAIN_EXTRA <<< "${TRAIN_EXTRA:-}"
read -r -a BENCH_EXTRA <<< "${BENCH_EXTRA:-}"
RUNS=${RUNS_DIR:-/tmp/dcgan-gpu-runs}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$RESULTS/bench" "$RUNS"
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[gpu.sh +$(elapsed)s] $*"; }

if [[ $DEVICE == cuda ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || log "nvidia-smi failed"
    $PY -c "import torch, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'accelerate', accelerate.__version__, 'gpu', torch.cuda.get_device_name())" || { log "no usable CUDA torch"; exit 1; }
fi

# Wall time of one training run, written beside its run folder (runs may go on in the background).
train() {  # name timeout overrides...
    local name=$1 limit=$2; shift 2
    local t0 rc
    t0=$(date +%s%N)
    timeout "$limit" $PY train.py "$@" output_dir="$RUNS/$name" data.root="$DATA" resume=never log.tracker=none \
        "${TRAIN_EXTRA[@]}" \
        > "$RUNS/$name.log" 2>&1
    rc=$?
    echo "{\"name\": \"$name\", \"rc\": $rc, \"wall_ms\": $(( ($(date +%s%N) - t0) / 1000000 ))}" > "$RUNS/$name.time.json"
    log "$name finished rc=$rc"
}

if [[ $PARTS == *A* ]]; then
    log "A: three 20-epoch recipes side by side (eager)"
    train dcgan_default 420 --config configs/mnist.yaml &
    train dcgan_seed_faithful 420 --config configs/seed_faithful.yaml &
    train mlp 420 --config configs/mnist_mlp.yaml &
    wait
fi

limit_b=${B_LIMIT:-$(( BUDGET + 120 - $(elapsed) ))}  # B may run past the budget a little: the timed run
if [[ $PARTS == *B* ]] && (( limit_b >= 60 )); then
    log "B: the default recipe alone, compiled (at most ${limit_b}s)"
    train dcgan_default_compiled "$limit_b" --config configs/mnist.yaml train.compile=true
else
    log "skip B"
fi

log "C: throughput, framework vs the tutorial's loop"
bench() {  # name args...
    local name=$1; shift
    if [[ $PARTS != *C* ]] || (( $(elapsed) > BUDGET )); then
        log "skip $name (budget of ${BUDGET}s spent)"
        echo "{\"skipped\": \"budget\"}" > "$RESULTS/bench/$name.json"
        return
    fi
    timeout ${BENCH_LIMIT:-120} $PY bench/throughput.py --device "$DEVICE" --data-root "$DATA" --windows 5 --steps 50 --warmup 30 \
        --json "$RESULTS/bench/$name.json" "$@" "${BENCH_EXTRA[@]}" > "$RESULTS/bench/$name.log" 2>&1 \
        || { log "$name failed: $(tail -n 1 "$RESULTS/bench/$name.log")"
             echo "{\"skipped\": \"failed, see $name.log\"}" > "$RESULTS/bench/$name.json"; }
    log "$name done"
}
# Most telling first: a short lease runs the head of this list.
bench b1024_bf16 --batch 1024 --precision bf16 --profile "$RESULTS/bench/b1024_bf16.profile.txt"
bench b32_bf16 --batch 32 --precision bf16 --profile "$RESULTS/bench/b32_bf16.profile.txt"
bench b1024_bf16_compiled --batch 1024 --precision bf16 --compile
# The host's CPU, one thread, for issue 7's CPU targets: bf16 needs AVX512-BF16/AMX, which the dev VM lacks
# (hardware.cpu_bf16_flags in the JSON says what this one has).
bench cpu_b64_fp32 --device cpu --threads 1 --batch 64 --precision no --windows 5 --steps 20 --warmup 5
bench cpu_b64_bf16 --device cpu --threads 1 --batch 64 --precision bf16 --reference-precision no \
    --windows 5 --steps 20 --warmup 5
bench b32_fp32 --batch 32 --precision no
bench b1024_fp16 --batch 1024 --precision fp16
bench b1024_bf16_nhwc --batch 1024 --precision bf16 --set train.memory_format=channels_last
bench b32_fp32_compiled --batch 32 --precision no --compile
bench b32_fp16 --batch 32 --precision fp16
bench b1024_fp32 --batch 1024 --precision no
bench b256_bf16 --batch 256 --precision bf16
bench b32_fp32_nhwc --batch 32 --precision no --set train.memory_format=channels_last
# Where the compiled step's time goes (CUDA graphs under the profiler: last, in case they disagree).
bench b1024_bf16_compiled_profiled --batch 1024 --precision bf16 --compile --windows 1 \
    --profile "$RESULTS/bench/b1024_bf16_compiled.profile.txt"

log "report"
$PY bench/gpu_report.py "$RESULTS" "$RUNS" || log "report failed"
log "done in $(elapsed)s"
