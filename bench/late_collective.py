"""The abort of issue 23, on demand: `python bench/late_collective.py exit|end FLAG` as each of two ranks (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT set, as torchrun sets them).

Rank 1 starts an all-reduce and ends before it completes (`exit`: plain interpreter exit; `end`: the way a dcgan
rank ends, dcgan.distributed.end_process; rank 0 ends the same way); its atexit handler touches FLAG. Rank 0
waits for FLAG, then joins the all-reduce, so rank 1's gloo worker finishes and frees that work while rank 1's
interpreter is shutting down. The work holds Python objects (the thread-local state it captured, here
saved-tensor hooks; DDP's all-reduces capture their own), so freeing it needs the GIL of a finalizing
interpreter: with `exit` rank 1 often aborts (SIGABRT, exit 134 or -6), and rank 0 sometimes, over its own last
all-reduce; with `end` neither enters interpreter shutdown. bench/stress_exit.py --case late-collective counts
both.
"""

import atexit
import contextlib
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist


def main() -> None:
    mode, flag = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo")
    dist.all_reduce(torch.ones(1))
    if dist.get_rank() == 1:
        with torch.autograd.graph.saved_tensors_hooks(lambda x: x, lambda x: x):
            pending = dist.all_reduce(torch.ones(1), async_op=True)  # noqa: F841 - left running on purpose
        atexit.register(flag.touch)  # the last thing before interpreter shutdown
        if mode == "end":
            from dcgan.distributed import end_process

            end_process(0)
        return
    while not flag.exists():
        time.sleep(0.001)
    time.sleep(0.01)
    with contextlib.suppress(RuntimeError):  # rank 1 may be gone already: that is fine here
        dist.all_reduce(torch.ones(1))
    if mode == "end":  # this rank's own last collective may still be being freed too
        from dcgan.distributed import end_process

        end_process(0)


if __name__ == "__main__":
    main()
