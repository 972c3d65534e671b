"""`python step_probe.py OUT [KEY=VALUE ...]` as each of two ranks (tests/conftest.py's run_ranks, no launcher): one GAN
step object (dcgan/train/step.py) built from the smoke config, called in-process for 4 steps on this rank's own
batches; counts the DDP all-reduces in each phase with comm hooks and compares G and D with rank 0's. Writes
OUT/step_rank{R}.json."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from dcgan.config import load_config
from dcgan.models import build_models
from dcgan.runtime import make_accelerator
from dcgan.train.step import GANStep

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


def main() -> None:
    out = Path(sys.argv[1])
    cfg = load_config(SMOKE, ["log.tracker=none", f"output_dir={out}", *sys.argv[2:]])
    acc = make_accelerator(cfg)
    torch.manual_seed(cfg.seed)
    G, D = build_models(cfg.model, 28, 1, 0)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.optim.lr_g, betas=cfg.optim.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.optim.lr_d, betas=cfg.optim.betas)
    G, D, opt_g, opt_d = acc.prepare(G, D, opt_g, opt_d)
    noise = torch.Generator().manual_seed(100 + acc.process_index)
    step = GANStep(acc, (G, D), (opt_g, opt_d), cfg.train, cfg.optim, cfg.model.z_dim, 0, noise)
    counts: dict[str, dict[str, int]] = {}

    def counting(network):
        def hook(state, bucket):
            counts.setdefault(step.phase, {"G": 0, "D": 0})[network] += 1
            return allreduce_hook(state, bucket)

        return hook

    G.register_comm_hook(None, counting("G"))
    D.register_comm_hook(None, counting("D"))
    data = torch.Generator().manual_seed(acc.process_index)
    per_step = []
    for i in range(4):
        counts.clear()
        real = torch.rand(cfg.train.batch_size, 1, 28, 28, generator=data) * 2 - 1
        step(real, None, i)
        per_step.append(dict(counts))
    diffs = []
    for module in (G, D):
        for p in acc.unwrap_model(module).parameters():
            reference = p.detach().clone()
            dist.broadcast(reference, src=0)
            diffs.append((p.detach() - reference).abs().max().item())
    report = {"rank": acc.process_index, "world_size": acc.num_processes, "phases": per_step, "max_diff": max(diffs)}
    (out / f"step_rank{acc.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
