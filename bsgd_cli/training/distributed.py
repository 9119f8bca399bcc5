"""torch.distributed glue for runs launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment).

Training wraps the networks in DistributedDataParallel; batch denoising shards the file list
(file i goes to rank i mod world size), each rank writes its own outputs, and
:func:`gather_results` brings the per-file results to rank 0 for the summary.
Every helper here is a no-op (or the identity) in a single process. See docs/SCALING.md.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")
# Ranks of a batch denoise finish their shards at different times and then meet in
# gather_results; a crashed rank makes torchrun stop the others, so a long wait is safe.
GATHER_TIMEOUT = datetime.timedelta(hours=24)


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
    """(rank, world size) when several processes share a batch, else None.

    Under torchrun on a CUDA machine this also makes GPU ``LOCAL_RANK`` the current one, so that
    ``--device auto`` / ``cuda`` puts each process on its own GPU (an explicit ``cuda:N`` still wins).
    """
    rank, world, local = world_from_env()
    if world <= 1:
        return None
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        torch.cuda.set_device(local % torch.cuda.device_count())
    return rank, world


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


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the ranks (a detached copy; ``values`` itself in a single process)."""
    if not is_distributed():
        return values
    reduced = values.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / dist.get_world_size()


def broadcast_object(obj: T | None, src: int = 0) -> T:
    """``obj`` from rank ``src`` on every rank (pickled; tensors inside travel too)."""
    if not is_distributed():
        assert obj is not None
        return obj
    holder: list[Any] = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def wrap_for_processes(module: torch.nn.Module, trained: list[torch.nn.Parameter],
                       device: torch.device) -> torch.nn.Module:
    """``module`` in DistributedDataParallel when several processes train; ``module`` itself otherwise.

    Its parameters not in ``trained`` (the other branch with ``--branch bsn|diffusion``, a student)
    are frozen, so DDP neither waits for their gradients nor needs ``find_unused_parameters``. DDP
    broadcasts rank 0's weights when it is built.
    """
    if rank_and_world()[1] == 1:
        return module
    kept = {id(parameter) for parameter in trained}
    for parameter in module.parameters():
        if id(parameter) not in kept:
            parameter.requires_grad_(False)
    device_ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return DistributedDataParallel(module, device_ids=device_ids)


def on_rank0(read: Callable[[], T], errors: type[Exception]) -> T:
    """``read()`` on rank 0 only, its result sent to every rank; an ``errors`` exception there is raised
    on every rank (with its message), so all stop together. In a single process: ``read()``."""
    rank, world = rank_and_world()
    if world == 1:
        return read()
    answer: tuple[str, Any] | None = None
    if rank == 0:
        try:
            answer = ("ok", read())
        except errors as exc:
            answer = ("error", str(exc))
    kind, payload = broadcast_object(answer)
    if kind == "error":
        raise errors(payload)
    return payload


def _merge_round_robin(per_rank: list[list[T]]) -> list[T]:
    """Item k of rank r came from global position k * world + r: interleave back into that order."""
    merged: list[T] = []
    for position in range(max((len(items) for items in per_rank), default=0)):
        for items in per_rank:
            if position < len(items):
                merged.append(items[position])
    return merged


def gather_results(results: list[T]) -> list[T] | None:
    """Every rank's ``results`` combined on rank 0; ``None`` on the other ranks.

    Call it on every rank, after its shard is done (it is a collective). ``results`` are any
    picklable items, one per job of a round-robin shard (job i on rank i % world size) in job
    order; rank 0 gets them back in global job order. In a single process (no torchrun) it
    returns ``results`` unchanged. Under torchrun without a process group it opens a temporary
    gloo one (CPU only, so it needs no GPU set-up) and closes it again.
    """
    _rank, world, _local = world_from_env()
    if world <= 1 and not is_distributed():
        return results
    started_here = not (dist.is_available() and dist.is_initialized())
    if started_here:
        dist.init_process_group(backend="gloo", timeout=GATHER_TIMEOUT)
    try:
        per_rank: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(per_rank, list(results))
        is_main = dist.get_rank() == 0
    finally:
        if started_here:
            dist.destroy_process_group()
    return _merge_round_robin(per_rank) if is_main else None
