"""`python tests/helpers/dist_probe.py OUT CONFIG [KEY=VALUE ...]`, as each rank of a multi-process run
(tests/conftest.py's run_probe, tests/launch/test_multinode.py): trains through the real entry point while
counting DDP all-reduces per phase of the GAN step with comm hooks, then compares every rank's G and D parameters
with rank 0's. Writes one JSON report per rank. With PROBE_RANK1_FAILS_AT=N in the environment, rank 1
raises a RuntimeError at step N instead.
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

import dcgan.train.loop
from dcgan.commands.cli import main
from dcgan.train.loop import Trainer


class ProbedTrainer(Trainer):
    """The real Trainer, counting DDP all-reduces in each phase of the GAN step (the step says which phase runs)
    with comm hooks and recording each step's metrics; after `fit`, every rank compares its G and D with rank 0's.
    Writes OUT/rank{R}.json."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.counts = {phase: {"G": 0, "D": 0} for phase in ("D", "G")}
        self.parts.G.register_comm_hook(None, self._counting("G"))
        self.parts.D.register_comm_hook(None, self._counting("D"))
        self.phases = {"d_step": [], "g_step": []}
        self.step_metrics = []

    def _counting(self, network):
        def hook(state, bucket):
            self.counts[self.step.phase][network] += 1
            return allreduce_hook(state, bucket)

        return hook

    def advance(self, measure=False):
        fails_at = int(os.environ.get("PROBE_RANK1_FAILS_AT", -1))
        if self.accelerator.process_index == 1 and self.progress.step == fails_at:
            raise RuntimeError(f"rank 1 fails on purpose at step {self.progress.step}")
        self.counts = {phase: {"G": 0, "D": 0} for phase in ("D", "G")}
        result = super().advance(measure)
        self.phases["d_step"].append(self.counts["D"])
        self.phases["g_step"].append(self.counts["G"])
        self.step_metrics.append({k: v.item() for k, v in result.stats.items()})
        return result

    def fit(self):
        super().fit()
        acc = self.accelerator
        report = dict(
            rank=acc.process_index,
            world_size=acc.num_processes,
            dist_world_size=dist.get_world_size(),
            distributed_type=str(acc.distributed_type),
            phases=self.phases,
            steps=self.progress.step,
            G_max_diff=self._max_diff_to_rank0(self.parts.G),
            D_max_diff=self._max_diff_to_rank0(self.parts.D),
            first_real_index=int(self.parts.batches.indices(0)[0, 0]),
            noise_sample=torch.randn(2, generator=self.parts.noise).tolist(),
            step_metrics=self.step_metrics,
        )
        (OUT / f"rank{acc.process_index}.json").write_text(json.dumps(report))

    def _max_diff_to_rank0(self, module):
        worst = 0.0
        for p in self.accelerator.unwrap_model(module).parameters():
            reference = p.detach().clone()
            dist.broadcast(reference, src=0)
            worst = max(worst, (p.detach() - reference).abs().max().item())
        return worst


OUT = Path(sys.argv[1]) if __name__ == "__main__" else Path()

if __name__ == "__main__":
    # Through the real entry point, so that a probed run starts and ends exactly as `train.py` does.
    dcgan.train.loop.Trainer = ProbedTrainer
    sys.exit(main(["train", "--config", sys.argv[2], "log.tracker=none", *sys.argv[3:]]))
