"""Reads and writes of ``signdb.runs`` and ``signdb.run_images``. No commits here."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, text, update
from sqlalchemy.orm import Session

from signdb.data.splits import SPLITS, SplitPlan
from signdb.db.schema import runs
from signdb.errors import NotFound
from signdb.store.datasets import SPLIT_EXPRESSION, SPLIT_SOURCE, split_params


@dataclass(frozen=True)
class Run:
    id: int
    dataset_id: int
    dataset: str
    name: str | None
    model: str
    classes: list[int]
    hyperparams: dict[str, Any]
    trainer: dict[str, Any]
    engine: str
    seed: int
    test_fraction: float
    val_fraction: float
    split: str  # hash or fixed
    status: str  # effective: a running run with a stale heartbeat reads "interrupted"
    stored_status: str
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    error: str | None
    dataset_fingerprint: str | None
    code_version: str | None
    host: str | None
    train_size: int | None
    val_size: int | None
    test_size: int | None
    total_steps: int | None
    steps_done: int
    train_accuracy: float | None
    test_accuracy: float | None
    world_size: int = 1  # processes that trained it (torch.distributed)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["run_id"] = out.pop("id")
        return {"run_id": out.pop("run_id"), **out}


_RUN_COLUMNS = """
    r.id, r.dataset_id, d.name AS dataset, r.name, r.model, r.classes, r.hyperparams,
    r.trainer, r.engine, r.seed,
    r.test_fraction, r.val_fraction, r.split,
    signdb.effective_status(r.status, r.heartbeat_at) AS status,
    r.status AS stored_status, r.started_at, r.finished_at, r.heartbeat_at, r.error,
    r.dataset_fingerprint, r.code_version, r.host, r.train_size, r.val_size, r.test_size,
    r.total_steps,
    r.steps_done, r.train_accuracy, r.test_accuracy, r.world_size
"""


def create_run(
    session: Session,
    *,
    dataset_id: int,
    name: str | None,
    model: str,
    classes: list[int],
    hyperparams: dict[str, Any],
    trainer: dict[str, Any],
    engine: str,
    seed: int,
    test_fraction: float,
    code_version: str,
    host: str,
    pid: int,
    val_fraction: float = 0.0,
    split: str = "hash",
    status: str = "running",
    world_size: int = 1,
    launch_key: str | None = None,
) -> int:
    """A new run: ``running`` (started here and now) or ``queued`` (for a worker)."""
    started = text("now()") if status == "running" else None
    return session.execute(
        runs.insert()
        .values(
            dataset_id=dataset_id,
            name=name,
            model=model,
            classes=classes,
            hyperparams=hyperparams,
            trainer=trainer,
            engine=engine,
            seed=seed,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            split=split,
            status=status,
            started_at=started,
            heartbeat_at=started,
            code_version=code_version,
            host=host,
            pid=pid,
            world_size=world_size,
            launch_key=launch_key,
        )
        .returning(runs.c.id)
    ).scalar_one()


def assign_images(
    session: Session, run_id: int, dataset_id: int, classes: list[int], plan: SplitPlan
) -> dict[str, int]:
    """Record the run's train/val/test images (under ``plan``) and its data fingerprint."""
    session.execute(
        text(
            "INSERT INTO signdb.run_images (run_id, image_id, split) "  # noqa: S608 - constant
            f"SELECT CAST(:run AS bigint), i.id, {SPLIT_EXPRESSION} "
            f"FROM {SPLIT_SOURCE} WHERE i.dataset_id = :ds AND i.label = ANY(:classes)"
        ),
        {**split_params(plan), "run": run_id, "ds": dataset_id, "classes": classes},
    )
    digest = hashlib.sha256()
    sizes = dict.fromkeys(SPLITS, 0)
    rows = session.execute(
        text(
            "SELECT i.sha256, ri.split FROM signdb.run_images ri "
            "JOIN signdb.images i ON i.id = ri.image_id WHERE ri.run_id = :run ORDER BY i.sha256"
        ),
        {"run": run_id},
    )
    for sha, split in rows:
        digest.update(f"{sha}:{split}\n".encode())
        sizes[split] += 1
    session.execute(
        update(runs)
        .where(runs.c.id == run_id)
        .values(
            dataset_fingerprint=digest.hexdigest(),
            train_size=sizes["train"],
            val_size=sizes["val"],
            test_size=sizes["test"],
        )
    )
    return sizes


def split_sizes(session: Session, run_id: int) -> dict[str, int]:
    """Images per split of the run's assignment; every split of the schema is a key."""
    rows = session.execute(
        text("SELECT split, count(*) FROM signdb.run_images WHERE run_id = :r GROUP BY split"),
        {"r": run_id},
    )
    return {**dict.fromkeys(SPLITS, 0), **dict(rows.all())}


def split_images(session: Session, run_id: int, split: str, image_ids: list[int]) -> dict[int, int]:
    """``{image id: true label}`` for those of ``image_ids`` in the run's ``split``."""
    rows = session.execute(
        text(
            "SELECT i.id, i.label FROM signdb.run_images ri JOIN signdb.images i "
            "ON i.id = ri.image_id WHERE ri.run_id = :r AND ri.split = :s "
            "AND ri.image_id = ANY(:ids)"
        ),
        {"r": run_id, "s": split, "ids": image_ids},
    )
    return {image_id: label for image_id, label in rows}


def lock_run(session: Session, run_id: int) -> None:
    """Serialise writers of one run's results: two evaluations at once would collide."""
    session.execute(
        text("SELECT 1 FROM signdb.runs WHERE id = :r FOR NO KEY UPDATE"), {"r": run_id}
    )


def get_run(session: Session, run_id: int) -> Run:
    row = session.execute(
        text(
            f"SELECT {_RUN_COLUMNS} FROM signdb.runs r JOIN signdb.datasets d ON d.id = r.dataset_id "  # noqa: S608 - constant column list
            "WHERE r.id = :id"
        ),
        {"id": run_id},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no run with id {run_id}; `signdb runs list` shows the runs")
    return Run(**row._mapping)


def set_status(
    session: Session, run_id: int, status: str, *, error: str | None = None, finished: bool = True
) -> None:
    values: dict[str, Any] = {"status": status, "heartbeat_at": text("now()")}
    if finished:
        values["finished_at"] = text("now()")
    if error is not None:
        values["error"] = error
    session.execute(update(runs).where(runs.c.id == run_id).values(**values))


def mark_resumed(
    session: Session, run_id: int, pid: int, host: str, world_size: int | None = None
) -> None:
    values: dict[str, Any] = {"world_size": world_size} if world_size is not None else {}
    session.execute(
        update(runs)
        .where(runs.c.id == run_id)
        .values(
            status="running",
            heartbeat_at=text("now()"),
            # A queued run starts when a worker first takes it up.
            started_at=func.coalesce(runs.c.started_at, func.now()),
            finished_at=None,
            error=None,
            pid=pid,
            host=host,
            **values,
        )
    )


def run_of_launch(session: Session, launch_key: str) -> int | None:
    """The run a distributed launch created (``runs.launch_key``), if it created one."""
    return session.execute(
        text("SELECT id FROM signdb.runs WHERE launch_key = :k"), {"k": launch_key}
    ).scalar_one_or_none()


def release_launch(session: Session, launch_key: str) -> None:
    """A new launch took ``launch_key`` (a reused rendezvous id): the older run gives it up."""
    session.execute(update(runs).where(runs.c.launch_key == launch_key).values(launch_key=None))


def fail_if_running(session: Session, run_id: int, error: str) -> bool:
    """Mark a running run failed with ``error``; False when it already ended.

    Every rank of a distributed run may see the same failure: the first to
    record it wins, and its message (the most direct one) stays.
    """
    return bool(
        session.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status == "running")
            .values(
                status="failed", error=error, finished_at=text("now()"), heartbeat_at=text("now()")
            )
        ).rowcount
    )


def record_progress(
    session: Session, run_id: int, *, steps_done: int, total_steps: int | None = None
) -> None:
    values: dict[str, Any] = {"steps_done": steps_done, "heartbeat_at": text("now()")}
    if total_steps is not None:
        values["total_steps"] = total_steps
    session.execute(update(runs).where(runs.c.id == run_id).values(**values))


def record_accuracy(
    session: Session,
    run_id: int,
    *,
    train: float | None,
    test: float | None,
    val: float | None = None,
) -> None:
    session.execute(
        update(runs)
        .where(runs.c.id == run_id)
        .values(train_accuracy=train, test_accuracy=test, val_accuracy=val)
    )


def heartbeat(session: Session, run_id: int) -> None:
    session.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.status == "running")
        .values(heartbeat_at=text("now()"))
    )


def reconcile_stale(session: Session) -> int:
    """Store 'interrupted' for running runs whose heartbeat went stale."""
    return session.execute(
        text(
            "UPDATE signdb.runs SET status = 'interrupted', "
            "error = coalesce(error, 'heartbeat lost: the trainer stopped without finishing') "
            "WHERE status = 'running' AND signdb.effective_status(status, heartbeat_at) = 'interrupted'"
        )
    ).rowcount
