"""Data-parallel training over processes started by ``torchrun`` (issue 11).

    torchrun --nproc_per_node 2 -m amptorch.cli train config.yaml

Every rank builds the same data, model and optimizer (same config, same seed), reads only its slice of each
*global* batch of ``optim.batch_size`` structures (:class:`RankBatchSampler`: one shuffled order shared by all
ranks, each global batch cut into ``world_size`` contiguous slices), computes its part of the loss normalised by
the *global* counts of the batch (``AtomsLoss.from_residuals(res, counts)`` with counts from
:func:`all_reduce_sum`), and the gradients are summed over ranks (:func:`reduce_gradients`, one collective per
step). So the step equals one process on the whole global batch, to rounding, whatever the atom counts of the
slices. Only rank 0 writes the run directory; its path reaches the others by :func:`broadcast_text`.

The gradient sum is done here rather than by wrapping the module in ``DistributedDataParallel``: skorch, the
checkpoints and the calculator keep the plain module (no ``module.`` prefix in state dicts), a rank whose slice
of a short last batch is empty just adds zeros, and force training differentiates twice (``create_graph``), where
DDP's bucket hooks add nothing for networks of this size (tens of thousands of weights).

Backends: NCCL when the plan's device is CUDA (each rank on ``cuda:LOCAL_RANK``), gloo otherwise.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.distributed as dist

from amptorch.errors import InputError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # set by torchrun for every process it starts
# How long a rank waits in a collective: the other ranks wait at a barrier while rank 0 alone fills the
# fingerprint cache (main_first), which may take long; a rank that fails makes torchrun stop the others anyway.
TIMEOUT = datetime.timedelta(hours=4)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes.

    Attributes:
        rank: 0 .. size - 1 (rank 0 writes the run directory).
        size: number of processes (1: no process group).
        local_rank: index on this machine (the CUDA device of the rank).
        device: the torch device this rank trains on ("cpu", "cuda:1", ...).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0


_world: World | None = None  # set by setup(); None before (or after shutdown())
_owned = False  # the process group was made here (so shutdown() destroys it)


def _env_int(name: str) -> int:
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{text!r}; expected a whole number (torchrun sets it)", f"environment {name}") from None


def _rank_device(device: str, local_rank: int) -> str:
    """The plan's device for this rank: plain "cuda" becomes ``cuda:LOCAL_RANK``; an explicit index is kept."""
    return f"cuda:{local_rank}" if torch.device(device).type == "cuda" and ":" not in device else device


def launched() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process in all."""
    return "WORLD_SIZE" in os.environ and os.environ["WORLD_SIZE"].strip() not in ("", "1")


def setup(device: str = "cpu") -> World:
    """This process's :class:`World` for a run on ``device`` (the plan's), joining the process group once.

    Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment, world size > 1) the first
    call joins the group, with NCCL for a CUDA ``device`` and gloo otherwise, and sets this rank's CUDA device; a
    group the caller made already is used as it is (and left to the caller to destroy). Otherwise a
    one-process World. InputError for environment values that are not whole numbers or out of range.
    """
    global _world, _owned
    if _world is None:
        if dist.is_available() and dist.is_initialized():
            local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
            _world = World(dist.get_rank(), dist.get_world_size(), local, _rank_device(device, local))
        elif launched():
            _world, _owned = _join(device), True
            atexit.register(shutdown)  # a run that ends without calling shutdown() still leaves cleanly
        else:
            return World(device=device)
    return replace(_world, device=_rank_device(device, _world.local_rank))


def _join(device: str) -> World:
    """Join the process group torchrun's environment describes."""
    missing = [k for k in ENV if k not in os.environ]
    if missing:
        raise InputError(f"WORLD_SIZE is set but {', '.join(missing)} not; expected all of {', '.join(ENV)} "
                         "(start the run with torchrun)", "environment")  # fmt: skip
    rank, size, local = (_env_int(k) for k in ENV)
    if size < 1 or not 0 <= rank < size or local < 0:
        raise InputError(f"RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local}; expected 0 <= RANK < WORLD_SIZE "
                         "and LOCAL_RANK >= 0", "environment")  # fmt: skip
    rank_device = _rank_device(device, local)
    cuda = torch.device(rank_device).type == "cuda"
    if cuda:
        if not torch.cuda.is_available() or torch.device(rank_device).index >= torch.cuda.device_count():
            raise InputError(f"rank {rank} needs {rank_device}, but this machine has "
                             f"{torch.cuda.device_count()} CUDA devices; expected --nproc_per_node <= the GPUs "
                             "per machine", "config optim.device")  # fmt: skip
        torch.cuda.set_device(torch.device(rank_device))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return World(rank, size, local, rank_device)


def current() -> World:
    """The World made by :func:`setup`, or a one-process World when there is none."""
    return _world if _world is not None else World()


def shutdown() -> None:
    """Destroy the process group :func:`setup` made (once all ranks are done); nothing otherwise."""
    global _world, _owned
    if _owned and dist.is_initialized():
        dist.barrier()  # no rank tears its connections down while another still uses them
        dist.destroy_process_group()
    _world, _owned = None, False


def is_main() -> bool:
    """Rank 0, or a process outside any distributed run."""
    return current().main


def rank() -> int:
    return current().rank


def world_size() -> int:
    return current().size


def _comm_device() -> torch.device:
    """Where tensors must live for the group's collectives (NCCL: this rank's current GPU)."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks, in place (returned as is in one process). Stays on its device: no host
    round trip, so it can run every step."""
    if current().distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_text(text: str | None) -> str:
    """Rank 0's ``text`` on every rank (others pass anything): length then UTF-8 bytes as tensors, no pickle."""
    if not current().distributed:
        return text or ""
    device = _comm_device()
    data = (text or "").encode() if current().main else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if current().main:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, 0)
    return bytes(buf.cpu().numpy()).decode()


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank."""
    if not current().distributed:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device())
    dist.broadcast(t, 0)
    return int(t.item())


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers copied into every rank's ``module`` in place (the start of a run: the
    same weights, scaler tables and baseline everywhere, whatever each rank's random state)."""
    if current().distributed:
        for value in module.state_dict().values():
            dist.broadcast(value.data, 0)


def check_same(count: int, what: str, path: str) -> None:
    """InputError unless ``count`` is the same on every rank (e.g. training structures: every rank must index
    the same data set, or the slices overlap)."""
    if not current().distributed:
        return
    t = torch.tensor([count, -count], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    high, low = int(t[0]), -int(t[1])
    if high != low:
        raise InputError(f"rank {current().rank} has {count} {what}, others between {low} and {high}; "
                         "expected the same data on every rank (same config and files)", path)  # fmt: skip


def barrier() -> None:
    if current().distributed:
        dist.barrier()


@contextlib.contextmanager
def main_first(enabled: bool = True) -> Iterator[None]:
    """Rank 0 runs the block, then the other ranks (e.g. rank 0 fills a cache the others then read)."""
    if not (enabled and current().distributed):
        yield
        return
    if not current().main:
        dist.barrier()
    yield
    if current().main:
        dist.barrier()


def reduce_gradients(params: Iterable[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
    """Sum the ``.grad`` of ``params`` and ``loss`` over the ranks in one collective; returns the summed loss
    (detached).

    A parameter without a gradient on any rank (e.g. a BPNN element network no structure of the global batch
    has) keeps ``grad`` None, as in one process, so optimizers skip it there too. Only a rank that lacked some
    gradient reads the summed flags back to the host; the usual step has no host round trip.
    """
    params = [p for p in params if p.requires_grad]
    if not current().distributed or not params:
        return loss.detach()
    ref = params[0]
    present = [p.grad is not None for p in params]
    parts = [p.grad.reshape(-1) if p.grad is not None else ref.new_zeros(p.numel()) for p in params]
    flags = [ref.new_full((1,), 1.0 if has else 0.0) for has in present]  # fill kernels: no host copy
    flat = torch.cat([*parts, *flags, loss.detach().reshape(1).to(ref)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    n = sum(p.numel() for p in params)
    used = [True] * len(params) if all(present) else (flat[n : n + len(params)] > 0).tolist()
    offset = 0
    for p, u in zip(params, used, strict=True):
        p.grad = flat[offset : offset + p.numel()].view_as(p) if u else None
        offset += p.numel()
    return flat[-1]


class RankBatchSampler(torch.utils.data.Sampler):
    """This rank's slice of each global batch: a batch sampler for a DataLoader.

    The global batches are those of ``DataLoader(shuffle=shuffle, batch_size=batch_size)`` in one process: the
    order is ``torch.randperm`` from a seed drawn from the global torch RNG at each epoch, as torch's
    ``RandomSampler`` draws it (so one process gives exactly the batches it gave before), and in a run of
    several processes rank 0's seed is broadcast, so every rank cuts the same order. Each global batch is split
    into ``size`` contiguous slices (``numpy.array_split``: sizes differ by at most one, earlier ranks take the
    larger); a slice may be empty (a last batch smaller than the number of ranks): the rank then still takes
    part in the step's collectives with no structures.

    Args:
        n: number of structures in the data set.
        batch_size: structures per global batch.
        shuffle: a new order every epoch (training) or the data set's order (validation, scoring).
        rank, size: this rank and the number of ranks.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, rank: int = 0, size: int = 1):
        if batch_size < 1:
            raise InputError(f"{batch_size}; expected a positive number of structures per batch",
                             "config optim.batch_size")  # fmt: skip
        self.n, self.batch_size, self.shuffle, self.rank, self.size = n, batch_size, shuffle, rank, size

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def global_size(self, k: int) -> int:
        """Structures in global batch ``k`` (all ranks together)."""
        return min(self.batch_size, self.n - k * self.batch_size)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        seed = int(torch.empty((), dtype=torch.int64).random_().item())  # RandomSampler's own draw
        if self.size > 1 and dist.is_available() and dist.is_initialized():
            seed = broadcast_int(seed)
        generator = torch.Generator()
        generator.manual_seed(seed)
        return torch.randperm(self.n, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order()
        for start in range(0, self.n, self.batch_size):
            batch = order[start : start + self.batch_size]
            yield [int(i) for i in np.array_split(np.asarray(batch, dtype=np.int64), self.size)[self.rank]]


__all__ = [
    "RankBatchSampler",
    "World",
    "all_reduce_sum",
    "barrier",
    "broadcast_int",
    "broadcast_module",
    "broadcast_text",
    "check_same",
    "current",
    "is_main",
    "launched",
    "main_first",
    "rank",
    "reduce_gradients",
    "setup",
    "shutdown",
    "world_size",
]
