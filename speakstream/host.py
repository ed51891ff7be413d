"""Which machine this is: the CPU, its vector extensions, its cores and how fast it reads memory.

Hosts of the same class differ several-fold in how fast they run the model (the vector
extensions decide which kernels run, memory bandwidth how fast weights stream), so every
figure the app logs or the bench prints names its host, and the choice of engine is kept
per host.
"""

from __future__ import annotations

import platform
import re
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from speakstream.torch_threads import machine_cores

# Flags of /proc/cpuinfo (x86 "flags", ARM "Features") worth naming, and how.
EXTENSIONS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "avx_vnni": "AVX-VNNI",
    "amx_tile": "AMX",
    "asimd": "NEON",
    "asimddp": "NEON-dot",
    "i8mm": "I8MM",
    "sve": "SVE",
}
PROBE_BYTES = 64 * 1024 * 1024  # larger than the last-level caches of the machines we meet


@dataclass(frozen=True)
class Host:
    cpu: str
    extensions: tuple[str, ...]
    cores: int
    torch_kernels: str  # the vector code torch runs (ATEN_CPU_CAPABILITY can lower it)
    read_gb_per_s: float | None

    def line(self) -> str:
        """One line for logs and benchmark output."""
        read = f"{self.read_gb_per_s:.1f} GB/s read" if self.read_gb_per_s else "memory read not probed"
        extensions = ", ".join(self.extensions) or "no vector extensions named"
        return f"{self.cpu} ({extensions}) · {self.cores} cores · torch kernels {self.torch_kernels} · {read}"

    def key(self) -> str:
        """What a measurement on this host depends on (not the bandwidth probe, which varies run to run)."""
        return f"{self.cpu}|{','.join(self.extensions)}|{self.cores}|{self.torch_kernels}"


def cpu_model() -> str:
    info = _cpuinfo()
    for field in ("model name", "Hardware", "Processor"):
        match = re.search(rf"^{field}\s*:\s*(.+)$", info, re.MULTILINE)
        if match:
            return match.group(1).strip()
    if platform.system() == "Darwin":
        try:
            done = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=False
            )
            if done.stdout.strip():
                return done.stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_extensions() -> tuple[str, ...]:
    match = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", _cpuinfo(), re.MULTILINE)
    flags = set(match.group(1).split()) if match else set()
    if not flags and platform.machine() in ("arm64", "aarch64"):
        flags.add("asimd")  # every 64-bit ARM CPU has NEON (macOS has no /proc/cpuinfo)
    return tuple(name for flag, name in EXTENSIONS.items() if flag in flags)


def torch_kernels() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def read_bandwidth(repeats: int = 5) -> float:
    """GB/s one thread reads from memory (a sum over an array larger than the caches), best of ``repeats``."""
    data = np.ones(PROBE_BYTES // 4, dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - started)
    return PROBE_BYTES / best / 1e9


@cache
def describe_host(probe_memory: bool = True) -> Host:
    """This machine (cached: it does not change while the process runs)."""
    return Host(
        cpu=cpu_model(),
        extensions=cpu_extensions(),
        cores=machine_cores(),
        torch_kernels=torch_kernels(),
        read_gb_per_s=read_bandwidth() if probe_memory else None,
    )


def _cpuinfo() -> str:
    path = Path("/proc/cpuinfo")
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        return ""
