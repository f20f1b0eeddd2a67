"""torchrun: N processes train one network as one process would (docs/distributed.md).

Every rank draws the same epoch order and takes its consecutive share of each global batch; DDP averages the
gradients in backward, and rank 0's BatchNorm statistics are broadcast after each epoch, so the ranks hold one
network. Rank 0 alone prints and writes files.
"""
import gc
import os

import torch
import torch.distributed as dist


def setup(device):
    """Under torchrun (which sets RANK, LOCAL_RANK and WORLD_SIZE): join the process group, NCCL between GPUs
    (one GPU per process), gloo between CPU processes. Returns (rank, world size, this process's device);
    (0, 1, device) for a plain `python train.py`."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def rank_batch(order, step, bs, rank, world):
    """This rank's share of global batch `step`: the one-process batch order[step * bs:(step + 1) * bs], cut
    into `world` consecutive pieces. Every rank draws the same order, so together they see what one process
    sees."""
    local = bs // world
    start = step * bs + rank * local
    return order[start:start + local]


def finish(world, ended_well):
    """Leaves the process group. After a run that ended well, rank 0 still scores model.pth; the others wait
    for it at a barrier, so no rank tears gloo's threads down while a peer is still connected (seen in CI: a
    rank aborting on exit, SIGABRT). On rank 0 the DDP wrapper outlives the run in a reference cycle (only
    gc.collect() frees it); collected now, the process group it holds is not destroyed while Python shuts
    down."""
    if world == 1:
        return
    if ended_well:
        dist.barrier()
        gc.collect()
    dist.destroy_process_group()
