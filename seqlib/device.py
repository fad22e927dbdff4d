"""Device and precision helpers: which device, what it is called, which autocast dtype, its peak FLOP/s.

The same notebook runs on a laptop CPU, a Colab T4 and an H100. These helpers pick the precision
each device supports:

* CUDA with bf16 tensor cores (compute capability >= 8: A100, L4, H100, ...): bf16 autocast, no loss scaling;
* older CUDA GPUs (T4, V100): fp16 autocast with a ``GradScaler`` (fp16 overflows without loss scaling);
* CPU: plain fp32 (CPU autocast is slower than fp32 for these small models).

``peak_flops`` gives the dense tensor-core peak used for model FLOPs utilisation (MFU):
``MFU = achieved FLOP/s / peak FLOP/s``, with achieved FLOP/s = training FLOPs per token x tokens/s.
"""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["default_device", "device_name", "autocast_dtype", "needs_grad_scaler", "peak_flops", "as_device"]


def as_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` as a ``torch.device``; None -> ``default_device()``."""
    return default_device() if device is None else torch.device(device)


def default_device() -> torch.device:
    """``cuda`` when a GPU is available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def device_name(device: torch.device | str | None = None) -> str:
    """A human-readable name: ``"NVIDIA H100 80GB HBM3"``, ``"cpu (AMD EPYC, 2 cores)"``."""
    device = as_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    cores = os.cpu_count() or 0
    model = _cpu_model()
    return f"cpu ({model}, {cores} cores)" if model else f"cpu ({cores} cores)"


def _bf16_tensor_cores(device: torch.device) -> bool:
    # torch.cuda.is_bf16_supported() also says True where bf16 is only emulated (T4: slow),
    # so we ask for native support: compute capability 8.0 (Ampere) or newer.
    if not torch.cuda.is_bf16_supported():
        return False
    return torch.cuda.get_device_capability(device)[0] >= 8


def autocast_dtype(device: torch.device | str | None = None) -> torch.dtype | None:
    """The autocast dtype for ``device``: bf16 on Ampere+ GPUs, fp16 on older GPUs, None (fp32) on CPU."""
    device = as_device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if _bf16_tensor_cores(device) else torch.float16


def needs_grad_scaler(device: torch.device | str | None = None) -> bool:
    """True where ``autocast_dtype`` is fp16: its gradients underflow without loss scaling."""
    return autocast_dtype(device) == torch.float16


# Dense (no sparsity) peak FLOP/s from the vendors' data sheets: (name fragment, bf16/fp16 tensor core, fp32).
# The first fragment found in the device name wins, so more specific names come first.
# None where the format has no tensor-core path (bf16 on T4 and V100).
_PEAK_FLOPS: list[tuple[str, float | None, float | None, float]] = [
    # name fragment, bf16, fp16, fp32 (non-tensor-core)
    ("H200 NVL", 835e12, 835e12, 60e12),  # the PCIe card, lower clocks than the SXM part
    ("H200", 989e12, 989e12, 67e12),  # SXM: the H100's rates, more and faster memory
    ("H100 NVL", 835e12, 835e12, 60e12),
    ("H100 PCIe", 756e12, 756e12, 51e12),
    ("H100", 989e12, 989e12, 67e12),  # SXM / HBM3
    ("A100", 312e12, 312e12, 19.5e12),
    ("L40S", 362e12, 362e12, 91.6e12),
    ("L40", 181e12, 181e12, 90.5e12),
    ("L4", 121e12, 121e12, 30.3e12),
    ("A10G", 70e12, 70e12, 31.2e12),
    ("A10", 125e12, 125e12, 31.2e12),
    ("T4", None, 65e12, 8.1e12),
    ("V100", None, 125e12, 15.7e12),
]


def peak_flops(device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> float | None:
    """Dense peak FLOP/s of ``device`` for matmuls in ``dtype`` (None or fp32: plain fp32 peak).

    None on CPU and on GPUs missing from the table, so MFU is reported as unknown rather than guessed.
    """
    device = as_device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, bf16, fp16, fp32 in _PEAK_FLOPS:
        if fragment in name:
            if dtype == torch.bfloat16:
                return bf16
            if dtype == torch.float16:
                return fp16
            return fp32
    return None
