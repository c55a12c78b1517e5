"""A scikit-learn model trained on a signdb run's split, its predictions logged back.

    python examples/sklearn_model.py --dataset digits --classes all

The run is a signdb run like any other: it appears in ``run_summary``,
``leaderboard`` and ``learning_curves``, and ``signdb report RUN_ID`` draws it.
"""

from __future__ import annotations

import argparse

from sklearn.linear_model import LogisticRegression

import signdb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--classes", default="all", help="names or labels, or 'all'")
    parser.add_argument("--database-url", default=None, help="default: $SIGNDB_DATABASE_URL")
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    args = parser.parse_args(argv)

    db = signdb.connect(args.database_url)
    params = {"C": args.C, "max_iter": 500}
    with db.start_run(args.dataset, "sklearn:LogisticRegression", classes=args.classes,
                      params=params, val_fraction=0.15) as run:  # fmt: skip
        X, y, _ = run.arrays("train")
        model = LogisticRegression(**params).fit(X.reshape(len(X), -1), y)
        for split in ("train", "val"):
            Xs, ys, _ = run.arrays(split)
            run.log(0, **{f"{split}_accuracy": model.score(Xs.reshape(len(Xs), -1), ys)})
        X_test, _, test_ids = run.arrays("test")
        # Columns of predict_proba follow model.classes_, i.e. the class indices 0..k-1,
        # which is the order of run.classes.
        run.log_predictions("test", test_ids, model.predict_proba(X_test.reshape(len(X_test), -1)))
    print(run.id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
