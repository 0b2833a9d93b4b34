"""The example job on several processes: torchrun's environment, the process group, the device,
and the few collective operations the training loop needs.

torchrun (``job.processes: N`` in trainboard) starts this job N times with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE`` set (and ``MASTER_ADDR``/``MASTER_PORT``,
which ``init_process_group`` reads). Without them (``WORLD_SIZE`` unset or 1) the job is one
process and nothing here touches ``torch.distributed``.

Backend and device: with ``TRAINBOARD_GPUS`` (trainboard sets it from ``job.gpus``) > 0 and
CUDA there, rank r uses GPU ``r % gpus``, and the group is NCCL when every local rank has a
GPU of its own (NCCL cannot share one GPU between ranks), else gloo; without GPUs, gloo on CPU.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass
class World:
    """This process's place among the job's processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs, reports progress and writes outputs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def rank_batch(self, batch_size: int) -> int:
        """Rows each process takes of a global batch of ``batch_size`` (the global batch is
        ``size`` times this: ``batch_size`` itself when ``size`` divides it)."""
        return max(1, math.ceil(batch_size / self.size))

    def threads(self, cpus: int) -> int:
        """Torch threads for this process: the machine's CPUs shared by the local processes."""
        return max(1, cpus // self.local_size)

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over every process (all of them must call this, in the same order)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.tolist()]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order, on every process."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def wrap(self, model: Any) -> Any:
        """``model`` on this process's device; under DistributedDataParallel with several processes."""
        model = model.to(self.device)
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        """Wait for every process, then leave the group (the end of the job)."""
        if self.distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def setup() -> World:
    """The world torchrun describes, with its process group joined (when there are several)."""
    world = World(
        rank=_env_int("RANK", 0),
        size=_env_int("WORLD_SIZE", 1),
        local_rank=_env_int("LOCAL_RANK", 0),
        local_size=_env_int("LOCAL_WORLD_SIZE", 1),
    )
    gpus = _env_int("TRAINBOARD_GPUS", 0)
    if gpus > 0 and torch.cuda.is_available():
        gpus = min(gpus, torch.cuda.device_count())
        world.device = torch.device("cuda", world.local_rank % gpus)
        torch.cuda.set_device(world.device)
    if world.distributed:
        own_gpu = world.device.type == "cuda" and gpus >= world.local_size
        world.backend = "nccl" if own_gpu else "gloo"
        dist.init_process_group(world.backend, rank=world.rank, world_size=world.size)
    return world


def shard_order(n: int, world: World, seed: int, epoch: int) -> list[int]:
    """This process's training rows for one epoch (0-based): DistributedSampler's shuffled share,
    padded so that every process has as many rows (and so as many steps). The order is one
    permutation of the rows (seeded by ``seed + epoch``) dealt out in turn: process r gets its
    positions r, r + N, ...; so its k-th batch of ``b`` rows and the others' k-th batches are,
    together, positions ``k*N*b`` to ``(k+1)*N*b`` of that permutation, the k-th global batch one
    process (N = 1) takes."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)
