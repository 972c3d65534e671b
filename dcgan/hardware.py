"""What a run or a benchmark ran on: the CPU's name and the instructions that decide its speed, the GPUs.

Recorded with every bench result, in each start of a run (run_history.jsonl) and in the tracker's config,
so that numbers from different machines are never compared unawares. The development and CI machines
are not all the same kind of CPU: bf16 is native on some (AVX512-BF16, AMX) and emulated on others.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

import torch

# Instruction sets that decide how fast this project's kernels run on a CPU, under torch's names.
# aarch64 reports its own (`asimd`, `sve`, `bf16`) from /proc/cpuinfo.
_X86_FLAGS = ("avx2", "avx512_f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
_ARM_FLAGS = ("asimd", "sve", "bf16")
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ({} where there is none)."""
    path = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() not in fields:
                fields[key.strip()] = value.strip()
    return fields


@functools.cache
def cpu_name() -> str:
    info = _cpuinfo()
    name = info.get("model name") or _capabilities().get("cpu_name") or platform.processor()
    return str(name or platform.machine())


@functools.cache
def _capabilities() -> dict[str, Any]:
    """torch's own CPU probe (torch >= 2.6 on x86), {} where it has none."""
    probe = getattr(torch.cpu, "get_capabilities", None)
    try:
        return dict(probe()) if probe else {}
    except RuntimeError:
        return {}


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """The instruction sets of `_X86_FLAGS`/`_ARM_FLAGS` this CPU has."""
    caps = _capabilities()
    if any(k in caps for k in _X86_FLAGS):
        return tuple(f for f in _X86_FLAGS if caps.get(f))
    info = _cpuinfo()
    if "flags" in info:  # x86 without torch's probe: /proc/cpuinfo spells avx512_f as avx512f
        have = set(info["flags"].split())
        return tuple(f for f in _X86_FLAGS if f in have or f.replace("_f", "f") in have)
    have = set(info.get("Features", "").split())
    return tuple(f for f in _ARM_FLAGS if f in have)


def cpu_has_bf16() -> bool | None:
    """Whether this CPU computes bf16 natively (AVX512-BF16, AMX, Arm BF16); None where it cannot be told."""
    if not _capabilities() and not _cpuinfo():
        return None
    return bool(BF16_FLAGS & set(cpu_flags()))


def describe(device: torch.device | None = None) -> dict[str, Any]:
    """The machine in a few JSON-ready fields; with a CUDA `device`, its GPU too."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": cpu_name(),
        "cpu_flags": list(cpu_flags()),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
    return info
