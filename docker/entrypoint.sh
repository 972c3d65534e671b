#!/bin/sh
# The image's entrypoint: `accelerate launch --multi_gpu train.py ARGS`, one training process per visible GPU.
# --multi_gpu makes accelerate start torchrun even for a single GPU. Its single-process launcher would be the
# container's PID 1 without a SIGTERM handler, so the kernel drops `docker stop`'s SIGTERM and training dies
# at the SIGKILL that follows, without a checkpoint; torchrun passes SIGTERM on to the training processes,
# which save a checkpoint and exit 3 (both checked with accelerate 1.15 as PID 1 of a PID namespace, on a CPU
# and on an H100).
set -eu
if ! python -c "import sys, torch; sys.exit(torch.cuda.device_count() == 0)" 2>/dev/null; then
    echo "dcgan-docker: error: no GPU visible in the container; run it with --gpus all (NVIDIA Container Toolkit)," \
        "or on the CPU with: docker run --entrypoint python IMAGE train.py ARGS" >&2
    exit 2
fi
exec accelerate launch --multi_gpu train.py "$@"
