"""Where models run: one device setting for building, encoding, training and searching.

``"auto"`` (the default everywhere) is the first CUDA GPU when there is one, else the CPU;
``"cpu"``, ``"cuda"`` and ``"cuda:N"`` name one. Building an index reads the device of the
innermost :func:`using_device` block (the CLI's ``--device``, :func:`genir.retrieval.build_index`'s
``device=``): document embeddings, a frozen encoder's cached states and training all run there.
FM-index work always stays on the CPU.

The block's ``count`` (``--devices``, ``devices=``) is how many devices of that kind a build may
spread over: training then runs one process per device (Lightning DDP), and document embeddings
(:meth:`genir.encoding.encoder.TextEncoder.encode`) are computed by one process per device
(:mod:`genir.encoding.sharded`). Processes started that way see the defaults (``auto``, 1), so
work inside them never spreads again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from genir.errors import GenirError

_CURRENT: ContextVar[str] = ContextVar("genir_device", default="auto")
_COUNT: ContextVar[int] = ContextVar("genir_device_count", default=1)


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """``spec`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; None = the current setting) as a device.

    Raises:
        GenirError: an unknown spec, or a CUDA device this machine does not have.
    """
    spec = _CURRENT.get() if spec is None else spec
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise GenirError(f"unknown device {spec!r}: choose auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise GenirError(f"device {spec!r} is not available on this machine ({torch.cuda.device_count()} CUDA devices)")
    if device.type not in {"cpu", "cuda"}:
        raise GenirError(f"unsupported device {spec!r}: choose auto, cpu, cuda or cuda:N")
    return device


def device_count() -> int:
    """How many devices of the current kind a run may spread over (:func:`using_device`'s ``count``)."""
    return _COUNT.get()


@contextmanager
def using_device(spec: str | None, count: int = 1) -> Iterator[torch.device]:
    """Within the block, :func:`resolve_device` with no argument answers ``spec`` (checked first),
    and :func:`device_count` answers ``count``: with ``count > 1`` training and document encoding
    run one process per device (GPUs ``0..count-1``, or CPU processes)."""
    device = resolve_device(spec or "auto")
    if count < 1 or (device.type == "cuda" and count > torch.cuda.device_count()):
        raise GenirError(f"--devices {count}: this machine has {torch.cuda.device_count()} CUDA devices")
    tokens = _CURRENT.set(str(device)), _COUNT.set(count)
    try:
        yield device
    finally:
        _CURRENT.reset(tokens[0])
        _COUNT.reset(tokens[1])


def auto_precision(device: torch.device) -> str:
    """Lightning precision for ``device``: ``bf16-mixed`` on GPUs that have bf16, else ``32-true``."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"
