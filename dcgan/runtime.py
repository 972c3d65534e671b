"""How training runs on this machine: the Accelerator (the one seam to DDP, mixed precision and torch.compile),
the device settings it can and cannot honour (fp16, bf16, SyncBatchNorm), kernel choices (TF32, memory
format), and reaching past the wrappers it puts around the networks. Model code never sees any of it.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    InitProcessGroupKwargs,
    TorchDynamoPlugin,
)

from dcgan import hardware
from dcgan.config import Config, TrainConfig
from dcgan.distributed import gather_per_rank, introduce
from dcgan.errors import EXIT_PEER_LOST, Stopped, UserError

DDP_BUCKET_MB = 32  # every network here fits one bucket (the 64 px paper D at width 64: 11 MB of gradients)


def on_cpu(train: TrainConfig) -> bool:
    return train.cpu or not torch.cuda.is_available()


def check_device_settings(train: TrainConfig) -> None:
    """Precision and BatchNorm settings this machine cannot run as asked: a UserError saying what to set."""
    precision = train.mixed_precision
    cpu = on_cpu(train)
    if precision == "fp16" and cpu:
        # Accelerate would silently train in fp32 here; say so instead.
        raise UserError("train.mixed_precision=fp16 needs a CUDA GPU; on CPU use bf16 or no")
    if precision == "bf16" and cpu and hardware.cpu_has_bf16() is False and not train.allow_emulated_bf16:
        # Refused, not warned: the run would only be slower and less precise than fp32, and a warning
        # scrolls away in a batch job's log while the job burns its hours.
        raise UserError(
            f"train.mixed_precision=bf16: this CPU ({hardware.cpu_name()}) has no bf16 instructions (AVX512-BF16 "
            "or AMX), so bf16 is emulated, several times slower than fp32; use train.mixed_precision=no, or set "
            "train.allow_emulated_bf16=true to run it anyway"
        )
    if train.sync_batchnorm and cpu:
        raise UserError("train.sync_batchnorm=true needs CUDA GPUs (SyncBatchNorm does not run on CPU)")


def resolve_precision(train: TrainConfig) -> tuple[str, str]:
    """(precision, why): what `train.mixed_precision` stands for on this machine. `auto` never makes a run slower:
    bf16 only where the device computes it natively, fp16 with gradient scaling on a GPU without bf16, else
    fp32 (`no`); an explicit value stands for itself."""
    if train.mixed_precision != "auto":
        return train.mixed_precision, "as configured"
    if not on_cpu(train):
        gpu = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16", f"auto: the GPU ({gpu}) computes bf16 natively"
        return "fp16", f"auto: the GPU ({gpu}) has no native bf16; fp16 with gradient scaling"
    if hardware.cpu_has_bf16():
        flags = ", ".join(f for f in hardware.cpu_flags() if f in hardware.BF16_FLAGS)
        return "bf16", f"auto: this CPU computes bf16 natively ({flags})"
    return "no", f"auto: this CPU ({hardware.cpu_name()}) has no bf16 instructions, where bf16 is slower than fp32"


def make_accelerator(cfg: Config) -> Accelerator:
    """The Accelerator of a run (or of `dcgan eval`) for `cfg`; `train.mixed_precision=auto` stands for what it picks
    here (a training run has settled it before: dcgan/run/session.py settle_precision)."""
    check_device_settings(cfg.train)
    cpu = on_cpu(cfg.train)
    precision = resolve_precision(cfg.train)[0]
    # D runs two forwards (real, fake) before one backward. With broadcast_buffers=True, DDP
    # overwrites BatchNorm buffers in place between them, which raises an autograd error on
    # torch 2.6 up to the fix in 2.14. Every rank updates its BN buffers from its own batches
    # instead; buffers are not needed in sync for training, and sampling uses rank 0's.
    # An explicit bucket size also lifts DDP's 1 MiB cap on the first bucket (applied only when the size is
    # left at its default): with it, a conditional G's class embedding, whose gradient is ready last, went
    # into a second bucket, two all-reduces per G step. These networks are latency-bound, one bucket each.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False, bucket_cap_mb=DDP_BUCKET_MB)
    # torch 2.14 deprecates the flag for forward_sync_buffers, which Accelerate cannot pass yet; the
    # old flag still does exactly what we want on every torch we allow.
    warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
    trackers = None if cfg.log.tracker == "none" else cfg.log.tracker
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        accelerator = Accelerator(
            # Without cpu=True a `--multi_gpu` launch on a GPU-less host starts independent rank-0 processes.
            cpu=cpu,
            mixed_precision=precision,
            kwargs_handlers=[ddp, InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.fault.timeout_s))],
            dynamo_plugin=_dynamo_plugin(cfg.train, cpu),
            log_with=trackers,
            project_dir=cfg.output_dir,
        )
    except dist.DistStoreError as e:  # "Timed out after N seconds waiting for clients. 1/2 clients joined."
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        raise Stopped(
            f"not every rank joined the group at {where} within fault.timeout_s={cfg.fault.timeout_s} s ({e}); "
            "check that every machine's launcher and its ranks started, with the same --main_process_ip and port",
            EXIT_PEER_LOST,
        ) from None
    if accelerator.num_processes != launched:
        raise UserError(
            f"the launcher started {launched} processes but they formed a group of {accelerator.num_processes}; "
            "use a launch/ config (see launch/README.md)"
        )
    if accelerator.num_processes > 1:
        introduce(accelerator.process_index)
        precisions = gather_per_rank(accelerator, precision)
        if len(set(precisions)) > 1:
            shown = ", ".join(f"rank {rank} {p}" for rank, p in enumerate(precisions))
            raise UserError(
                f"the ranks would train in different precisions ({shown}): train.mixed_precision=auto picks by "
                "each machine's hardware; set train.mixed_precision to one value for all of them"
            )
    return accelerator


def _dynamo_plugin(train: TrainConfig, cpu: bool) -> TorchDynamoPlugin:
    """Compilation settings, stated in full so ACCELERATE_DYNAMO_* variables from a launcher cannot change them.

    `prepare()` then compiles each network after wrapping it in DDP. CUDA graphs (reduce-overhead) are
    only the automatic choice for a single GPU: under DDP the all-reduce hooks split the graphs anyway.
    """
    mode = train.compile_mode
    if mode == "auto":
        single_gpu = not cpu and int(os.environ.get("WORLD_SIZE", "1")) == 1
        mode = "reduce-overhead" if single_gpu else "default"
    return TorchDynamoPlugin(
        backend="inductor" if train.compile else "no",
        mode=mode,
        fullgraph=False,
        dynamic=False,  # every batch has the same shape (the remainder of an epoch is dropped)
        use_regional_compilation=False,
    )


def configure_backends(train: TrainConfig, device: torch.device) -> None:
    """Process-wide kernel choices for CUDA: autotuned convolutions, and TF32 where the config allows it."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest conv algorithm once
    torch.backends.cudnn.allow_tf32 = train.tf32
    torch.backends.cuda.matmul.allow_tf32 = train.tf32


def memory_format(train: TrainConfig, device: torch.device) -> str:
    """The layout `train.memory_format` resolves to on this device."""
    if train.memory_format != "auto":
        return train.memory_format
    return "channels_last" if device.type == "cpu" else "contiguous"


def bare_model(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside the DDP and torch.compile wrappers: its state_dict has the plain key names.

    The compile wrapper is read past before `unwrap_model` sees it: given a compiled DDP model,
    Accelerate's unwrap_model (keep_torch_compile=True, its default) sets the wrapper's `_orig_mod` to
    the bare module, silently removing DDP from training (no more gradient all-reduce) from then on.
    """
    model = accelerator.unwrap_model(getattr(model, "_orig_mod", model))
    return getattr(model, "_orig_mod", model)


def hot_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """What the training step calls `zero_grad()` and `step()` on: the torch optimizer inside Accelerate's wrapper.

    Without a gradient scaler (fp32, bf16) and without gradient accumulation (we have none), Accelerate's
    wrapper only forwards both calls, but charges for it on each: accelerate 1.x searches sys.path for
    the optional `lomo_optim` package twice per step() and inspects zero_grad's signature: 1.0-1.3 ms per
    GAN iteration on the 2-vCPU dev VM (7% of a batch-1 step), more on a slow file system. fp16 keeps
    the wrapper (its step() drives the shared scaler), XLA too; checkpoints and `unscale_gradients`
    always take the wrapper.
    """
    if getattr(optimizer, "scaler", None) is not None or getattr(optimizer, "optimizer", None) is None:
        return optimizer
    if optimizer.accelerator_state.distributed_type == DistributedType.XLA:
        return optimizer
    return optimizer.optimizer
