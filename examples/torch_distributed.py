"""Your own DistributedDataParallel loop, logged as one signdb run.

    torchrun --standalone --nproc-per-node 2 examples/torch_distributed.py --dataset digits

Every rank runs this script. ``signdb.torch.distributed_run`` starts the run on
rank 0 and opens the same run on the others; each rank reads only its share
of every batch (``RunDataset(..., batch_size=B)``: ``B`` images per rank, one
binary COPY per pass), DDP averages the gradients, and the loss is averaged
over the ranks before rank 0 logs it. ``run.log``, ``run.save_weights`` and
``run.log_predictions`` write on rank 0 and do nothing elsewhere, so the code
needs no ``if rank == 0``.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

import signdb
import signdb.torch
from signdb.torch import RunDataset, distributed_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--classes", default="all")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="images per rank and step")
    args = parser.parse_args(argv)

    # torchrun's environment says where the other ranks are; signdb's helper also copes
    # with torchrun --max-restarts restarting them (torch.distributed's own is fine without).
    signdb.torch.init_process_group("gloo")
    torch.manual_seed(0)  # the same initial weights on every rank (DDP broadcasts rank 0's)
    db = signdb.connect(args.database_url)
    params = {"epochs": args.epochs, "batch_size": args.batch_size}
    with distributed_run(db, args.dataset, "torch:ddp-linear", classes=args.classes,
                         params=params) as run:  # fmt: skip
        train = RunDataset(run, "train", batch_size=args.batch_size)
        channels, height, width = train.shape
        model = DistributedDataParallel(
            nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, len(run.classes)))
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        step = 0
        for epoch in range(args.epochs):
            train.set_epoch(epoch)
            for X, y in train:  # this rank's share of each batch; every rank has as many
                loss = F.cross_entropy(model(X), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                mean = loss.detach().clone()
                dist.all_reduce(mean)  # every rank's loss, averaged: what rank 0 logs
                run.log(step, loss=float(mean) / dist.get_world_size())
                step += 1
        run.save_weights(step, model.module.state_dict(), final=True)
        X_test, _, ids = run.arrays("test")
        with torch.no_grad():
            proba = F.softmax(model.module(torch.from_numpy(X_test).permute(0, 3, 1, 2)), dim=1)
        run.log_predictions("test", ids, proba.numpy())
    if dist.get_rank() == 0:
        print(run.id)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
