"""Your own PyTorch model, fed from PostgreSQL by ``signdb.torch.RunDataset``.

    python examples/torch_custom_model.py --dataset digits --epochs 5

A small CNN of this script's own (not signdb's ``cnn``) trains on mini-batches
that two DataLoader workers stream from PostgreSQL, each reading only its share
of the epoch's shuffled order. Each step's loss and each epoch's val accuracy go
back with ``run.log``, the ``state_dict`` with ``run.save_weights`` (batch norm's
int64 ``num_batches_tracked`` included, stored exactly) and the test
predictions, softmax probabilities in ``run.classes`` order, with
``run.log_predictions``: the run then has its place on the leaderboard and a
``signdb report``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

import signdb
from signdb.torch import RunDataset


class SmallCNN(nn.Module):
    """Two conv blocks with batch norm, global average pooling, one linear layer.

    Batch norm keeps a cumulative average of the batch statistics (``momentum=None``):
    the default running average starts from variance 1 and takes ~40 steps to
    forget it, longer than a run on a small dataset lasts.
    """

    def __init__(self, channels: int, classes: int, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.BatchNorm2d(width, momentum=None),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width, momentum=None),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def probabilities(model: nn.Module, X: torch.Tensor) -> np.ndarray:
    """Softmax rows for CHW images ``X``; column ``k`` is class ``run.classes[k]``."""
    model.eval()
    return F.softmax(model(X), dim=1).numpy()


def chw(X: np.ndarray) -> torch.Tensor:
    """``run.arrays``' NHWC numpy images as the NCHW tensor the model takes."""
    return torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--classes", default="all")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    db = signdb.connect(args.database_url)
    params = {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size}
    with db.start_run(args.dataset, "torch:small-cnn", classes=args.classes,
                      params=params, val_fraction=0.15) as run:  # fmt: skip
        train = RunDataset(run, "train")
        loader = DataLoader(
            train, batch_size=args.batch_size, num_workers=2, persistent_workers=True
        )
        model = SmallCNN(train.shape[0], len(run.classes))
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        X_val, y_val, _ = run.arrays("val")
        step = 0
        for epoch in range(args.epochs):
            train.set_epoch(epoch)  # reaches the persistent workers too
            model.train()
            for X, y in loader:
                loss = F.cross_entropy(model(X), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                run.log(step, loss=float(loss))
                step += 1
            val = probabilities(model, chw(X_val)).argmax(axis=1)
            run.log(step, val_accuracy=float((val == y_val).mean()))
        # Every tensor as it is: float32 weights and int64 batch counters alike.
        weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        run.save_weights(step, weights, final=True)
        X_test, _, test_ids = run.arrays("test")
        run.log_predictions("test", test_ids, probabilities(model, chw(X_test)))
    print(run.id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
