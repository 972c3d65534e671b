"""Launched by tests/test_distributed.py under `accelerate launch` with 2 CPU processes.

Trains a few steps through the real Trainer while counting DDP all-reduces per phase with comm hooks,
then compares every rank's G and D parameters with rank 0's. Writes one JSON report per rank.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from dcgan.config import load_config
from dcgan.trainer import Trainer


def main() -> None:
    out, config, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    trainer = Trainer(load_config(config, ["log.tracker=none", *overrides]))
    acc = trainer.accelerator
    counts = {"G": 0, "D": 0}

    def counting(name):
        def hook(state, bucket):
            counts[name] += 1
            return allreduce_hook(state, bucket)

        return hook

    trainer.G.register_comm_hook(None, counting("G"))
    trainer.D.register_comm_hook(None, counting("D"))
    phases = {"d_step": [], "g_step": []}
    for phase in phases:
        original = getattr(trainer, f"_{phase}")

        def wrapped(*args, _original=original, _phase=phase):
            before = dict(counts)
            result = _original(*args)
            phases[_phase].append({k: counts[k] - before[k] for k in counts})
            return result

        setattr(trainer, f"_{phase}", wrapped)
    step_metrics = []
    train_step = trainer.train_step

    def recording_step(*args, **kwargs):
        values = train_step(*args, **kwargs)
        step_metrics.append({k: v.item() for k, v in values.items()})
        return values

    trainer.train_step = recording_step
    report = {}
    finish = trainer._finish

    def inspect_then_finish():
        # Before _finish: end_training() tears the process group down.
        report.update(
            rank=acc.process_index,
            world_size=acc.num_processes,
            dist_world_size=dist.get_world_size(),
            distributed_type=str(acc.distributed_type),
            phases=phases,
            steps=trainer.progress.step,
            G_max_diff=max_diff_to_rank0(trainer.G),
            D_max_diff=max_diff_to_rank0(trainer.D),
            first_real_index=int(trainer.batches.indices(0)[0, 0]),
            noise_sample=torch.randn(2, generator=trainer.noise).tolist(),
            step_metrics=step_metrics,
        )
        finish()

    def max_diff_to_rank0(module):
        worst = 0.0
        for p in acc.unwrap_model(module).parameters():
            reference = p.detach().clone()
            dist.broadcast(reference, src=0)
            worst = max(worst, (p.detach() - reference).abs().max().item())
        return worst

    trainer._finish = inspect_then_finish
    trainer.fit()
    (out / f"rank{acc.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
