"""torch.distributed glue for runs launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment).

Training wraps the networks in DistributedDataParallel; batch denoising shards the file list
(file i goes to rank i mod world size), and each rank writes its own outputs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when not launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def shard_for_this_process() -> tuple[int, int] | None:
    """(rank, world size) when several processes share a batch, else None."""
    rank, world, _local = world_from_env()
    return (rank, world) if world > 1 else None


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def distributed_context(device: str = "auto") -> Iterator[DistInfo]:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on CPU); leave it afterwards."""
    rank, world, local = world_from_env()
    if world <= 1:
        yield DistInfo(0, 1, 0, device)
        return
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    elif device == "auto":
        device = "cpu"
    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        yield DistInfo(rank, world, local, device)
    finally:
        if started_here and dist.is_initialized():
            dist.destroy_process_group()
