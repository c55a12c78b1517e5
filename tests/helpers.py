"""Helpers shared by the CLI, fault and security tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys


def signdb(
    *args: str, env: dict | None = None, timeout: float = 300, input: str | None = None
) -> subprocess.CompletedProcess:
    """Run the real ``signdb`` entry point in a subprocess (the environment's URL applies)."""
    return subprocess.run(
        [sys.executable, "-m", "signdb", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        input=input,
    )


def signdb_popen(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "signdb", *args],
        env={**os.environ, **(env or {})},
        text=True,
        **kwargs,
    )


def train_spec(**kw):
    """A TrainSpec from flat keywords, as the CLI flags read: trainer settings split out."""
    from signdb.training import TrainerSettings, TrainSpec

    settings = {k: kw.pop(k) for k in ("cache", "eval_every", "checkpoint_every") if k in kw}
    return TrainSpec(trainer=TrainerSettings(**settings), **kw)


def write_class_images(folder, n: int, *, seed: int, colour: tuple[int, int, int]) -> None:
    """``n`` small RGB JPEG photos of one class under ``folder``: a coloured square on noise.

    Each class has its own colour, so models can learn them; the sizes vary
    (40-90 pixels a side) as crops from real photos do. Generated, never committed.
    """
    from pathlib import Path

    import numpy as np
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(40, 90, 2))
        arr = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        y0, x0 = int(rng.integers(0, h // 3)), int(rng.integers(0, w // 3))
        arr[y0 : y0 + h // 2, x0 : x0 + w // 2] = colour
        Image.fromarray(arr).save(folder / f"img_{seed}_{i:03d}.jpg", quality=90)


COLOURS = {
    "astronaut": (230, 230, 240),
    "cat": (200, 120, 40),
    "coffee": (90, 50, 20),
    "rocket": (220, 30, 30),
    "brick": (160, 60, 50),
    "grass": (40, 180, 60),
    "gravel": (130, 130, 130),
}


def named_tree(root, classes, per_class: int, *, seed: int = 0, splits=None):
    """A folder per class (``splits``: a pre-split tree with train/, test/, ...)."""
    from pathlib import Path

    root = Path(root)
    for i, name in enumerate(classes):
        if splits is None:
            write_class_images(root / name, per_class, seed=seed + i, colour=COLOURS[name])
        else:
            for j, split in enumerate(splits):
                write_class_images(
                    root / split / name, per_class, seed=seed + 10 * i + j, colour=COLOURS[name]
                )
    return root


@contextlib.contextmanager
def login_role(admin_url: str, member_of: str):
    """A LOGIN role (trust auth, no password) in ``member_of``; dropped afterwards.

    Roles are cluster-wide, so the name is unique to this process and call.
    """
    import uuid

    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = f"signdb_test_{member_of}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(name), sql.Identifier(member_of)
            )
        )
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [name],
            )
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def signdb_on_terminal(*args: str, answer: str, timeout: float = 120) -> tuple[int, str]:
    """Run ``signdb`` with a pseudo-terminal as stdin, stdout and stderr, as a person would,
    type ``answer`` and a newline once it asks; (exit status, everything it wrote)."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    leader, follower = pty.openpty()
    # 24 rows x 100 columns: a fresh pty is 0 x 0, and progress bars size themselves to it.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "signdb", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=os.environ.copy(),
        close_fds=True,
    )
    os.close(follower)
    out = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                if not answered and b"[y/N]" in out:
                    os.write(leader, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), out.decode(
            errors="replace"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
