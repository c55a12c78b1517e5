"""A hand-written numpy training loop that logs every step into signdb.

    python examples/numpy_loop.py --dataset digits --epochs 20

Softmax regression by mini-batch gradient descent: the batches stream from
PostgreSQL (``run.batches``), each step's loss and the epoch's val accuracy go
back with ``run.log``, the weights with ``run.save_weights`` and the test
predictions with ``run.log_predictions``.
"""

from __future__ import annotations

import argparse

import numpy as np

import signdb


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--classes", default="all")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    db = signdb.connect(args.database_url)
    params = {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size}
    with db.start_run(args.dataset, "numpy:softmax-loop", classes=args.classes,
                      params=params, val_fraction=0.15) as run:  # fmt: skip
        k = len(run.classes)
        X_val, y_val, _ = run.arrays("val")
        d = int(np.prod(X_val.shape[1:]))
        W, b = np.zeros((d, k)), np.zeros(k)
        step = 0
        for epoch in range(args.epochs):
            for X, y in run.batches("train", args.batch_size, shuffle=True, epoch=epoch):
                x = X.reshape(len(X), -1)
                p = softmax(x @ W + b)
                loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
                p[np.arange(len(y)), y] -= 1
                W -= args.lr * x.T @ p / len(y)
                b -= args.lr * p.mean(axis=0)
                run.log(step, loss=float(loss))
                step += 1
            val = softmax(X_val.reshape(len(X_val), -1) @ W + b).argmax(axis=1)
            run.log(step, val_accuracy=float((val == y_val).mean()))
        run.save_weights(step, {"weight": W, "bias": b}, final=True)
        X_test, _, test_ids = run.arrays("test")
        run.log_predictions("test", test_ids, softmax(X_test.reshape(len(X_test), -1) @ W + b))
    print(run.id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
