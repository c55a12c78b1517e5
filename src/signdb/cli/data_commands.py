"""``signdb load`` and ``signdb datasets list | show | fetch``: getting images into PostgreSQL."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from signdb.cli.context import Context, common_options
from signdb.cli.tables import table
from signdb.data.preprocess import COLORS, SIZE_MAX, SIZE_MIN

DEFAULT_SEED = 42
DEFAULT_TEST_FRACTION = 0.15


@contextlib.contextmanager
def _progress_bar(ctx: Context, total: int | None, **kwargs: Any) -> Iterator[Any]:
    """A tqdm bar on stderr when a person is watching; None otherwise (--json, pipes, CI)."""
    if not ctx.interactive:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs) as bar:
        yield bar


def _stderr(bar: Any, message: str) -> None:
    if bar is not None:
        bar.write(message, file=sys.stderr)  # keeps the bar intact below the message
    else:
        click.echo(message, err=True)


@click.command("load")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--dataset",
    "name",
    required=True,
    metavar="NAME",
    help="Dataset to load into (created if new).",
)
@click.option(
    "--size",
    type=click.IntRange(SIZE_MIN, SIZE_MAX),
    default=64,
    show_default=True,
    help="Resize every image to SIZE x SIZE pixels.",
)
@click.option(
    "--color",
    type=click.Choice(COLORS),
    default="gray",
    show_default=True,
    help="Store one gray channel or three RGB channels.",
)
@click.option(
    "--class-names",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Names for integer labels (npy, CSV, Parquet): line i names label i.",
)
@click.option("--strict", is_flag=True, help="Abort and write nothing if any input is rejected.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Processes decoding images in parallel.",
)
@common_options
def load(
    ctx: Context,
    path: Path,
    name: str,
    size: int,
    color: str,
    class_names: Path | None,
    strict: bool,
    workers: int,
) -> None:
    """Load PATH into a dataset: a folder per class (flat, or under train/ val/ test/), a CSV
    manifest (labels.csv: path,label[,split]), Hugging Face Parquet files, an X.npy + Y.npy
    pair, or a .zip / .tar / .tar.gz of any of them.

    A class folder's name is the class name; when every name is a plain number
    it is also the label, otherwise labels follow sorted names (as torchvision's
    ImageFolder). Images are identified by the sha256 of their stored pixels, so
    re-running a load (or loading the same images in another format) adds
    nothing, and a load that was interrupted resumes where it stopped. Rejected
    inputs are listed on stderr and skipped unless --strict is given.
    """
    from signdb.data.labels import read_class_names
    from signdb.data.preprocess import Preprocessing
    from signdb.store.datasets import check_name

    check_name(name)  # before starting a server or reading files
    names = read_class_names(class_names) if class_names is not None else None
    Preprocessing(size=size, color=color)  # the flags are checked before a server starts
    db = ctx.db
    with _progress_bar(ctx, None, unit="img", desc="loading") as bar:

        def sized(src) -> None:  # noqa: ANN001 - signdb.data.Input
            bar.total = src.count()
            bar.refresh()

        result = db.load(
            path,
            name,
            size=size,
            color=color,
            class_names=names,
            strict=strict,
            workers=workers,
            progress=bar.update if bar is not None else None,
            on_reject=lambda r: _stderr(bar, f"rejected: {r.source}: {r.reason}"),
            on_open=sized if bar is not None else None,
        )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    ctx.emit(result.as_dict(), _human_load)


def _human_load(r: dict[str, Any]) -> str:
    shown = ", ".join(r["classes"][:10]) + (", ..." if len(r["classes"]) > 10 else "")
    return (
        f"dataset {r['dataset']!r}: added {r['added']}, skipped {r['skipped_duplicates']} "
        f"duplicate(s), rejected {r['rejected']}; it now holds {r['images']} images in "
        f"{len(r['classes'])} classes ({shown})"
    )


@click.group("datasets")
def datasets_group() -> None:
    """List, inspect and download datasets."""


@datasets_group.command("list")
@common_options
def datasets_list(ctx: Context) -> None:
    """List the datasets with their image counts per label."""
    from signdb.db.engine import transaction
    from signdb.store.datasets import list_summaries

    with transaction(ctx.ready_engine(), "listing datasets") as session:
        summaries = list_summaries(session)
    ctx.emit({"datasets": [s.as_dict() for s in summaries]}, _human_list)


def _human_list(r: dict[str, Any]) -> str:
    if not r["datasets"]:
        return "no datasets yet; load one with `signdb load PATH --dataset NAME`"
    rows = [("name", "images", "labels", "preprocessing")]
    for d in r["datasets"]:
        p = d["preprocessing"]
        rows.append(
            (
                d["name"],
                str(d["images"]),
                str(len(d["labels"])),
                f"{p['size']}x{p['size']} {p['color']} ({p['resample']})",
            )
        )
    return table(rows, right={1, 2})


@datasets_group.command("show")
@click.argument("name")
@click.option(
    "--seed",
    type=int,
    default=DEFAULT_SEED,
    show_default=True,
    help="Seed of the hash split.",
)
@click.option(
    "--test-fraction",
    type=float,
    default=DEFAULT_TEST_FRACTION,
    show_default=True,
    help="Share of each class's images in the test split, between 0 and 1.",
)
@click.option(
    "--val-fraction",
    type=float,
    default=0.0,
    show_default=True,
    help="Share of each class's images in the val split.",
)
@click.option(
    "--split",
    "split_mode",
    type=click.Choice(["auto", "fixed", "hash"]),
    default="auto",
    show_default=True,
    help="Count the dataset's fixed split, the hash split, or (auto) fixed when there is one.",
)
@common_options
def datasets_show(
    ctx: Context, name: str, seed: int, test_fraction: float, val_fraction: float, split_mode: str
) -> None:
    """Show a dataset: images per class and per split, and its preprocessing."""
    from signdb.db.engine import transaction
    from signdb.store.datasets import summarize

    with transaction(ctx.ready_engine(), f"reading dataset {name!r}") as session:
        summary = summarize(
            session,
            name,
            mode=split_mode,
            seed=seed,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
        )
    result = summary.as_dict()
    result["seed"] = seed
    result["test_fraction"] = test_fraction
    result["val_fraction"] = val_fraction
    ctx.emit(result, _human_show)


def _human_show(r: dict[str, Any]) -> str:
    p = r["preprocessing"]
    splits = [s for s in ("train", "val", "test") if s != "val" or r["splits"]["val"]]
    rows = [("label", "class", "images", *splits)]
    for c in r["classes"]:
        rows.append((str(c["label"]), c["name"], str(c["images"]), *(str(c[s]) for s in splits)))
    totals = [str(sum(r["splits"][s].values())) for s in splits]
    rows.append(("total", "", str(r["images"]), *totals))
    plan = r["split"]
    how = (
        f"the dataset's fixed split{' (val carved by hash)' if plan['carve_val'] else ''}"
        if plan["mode"] == "fixed"
        else f"hash split with seed {r['seed']}, test fraction {r['test_fraction']}"
        + (f", val fraction {r['val_fraction']}" if r["val_fraction"] else "")
    )
    head = (
        f"dataset {r['name']!r}: {r['images']} images, {p['size']}x{p['size']} {p['color']} "
        f"({p['resample']}); {how}"
    )
    return head + "\n" + table(rows, right={0, 2, 3, 4, 5})


@datasets_group.command("fetch")
@click.argument("name", default="sign-language-digits")
@click.option("--url", metavar="URL", help="Download from this URL (https:// or file://) instead.")
@click.option(
    "--sha256", "sha256", metavar="HEX", help="Expected sha256 of the archive (64 hex digits)."
)
@common_options
def datasets_fetch(ctx: Context, name: str, url: str | None, sha256: str | None) -> None:
    """Download a public dataset (default: sign-language-digits), verify it and unpack it.

    The archive is cached under the data home, so fetching again downloads
    nothing. Prints the folder to pass to `signdb load`.
    """
    from signdb.config import data_home
    from signdb.data.fetch import UnpinnedChecksumWarning, fetch_dataset

    with _progress_bar(ctx, None, unit="B", unit_scale=True, desc="downloading") as bar:

        def progress(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnpinnedChecksumWarning)
            path = fetch_dataset(
                name,
                url=url,
                sha256=sha256,
                cache_dir=data_home() / "cache",
                progress=progress if bar is not None else None,
            )
    for w in caught:
        if issubclass(w.category, UnpinnedChecksumWarning):
            click.echo(f"note: {w.message}", err=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ctx.emit({"path": str(path)}, lambda r: r["path"])


def register(cli: click.Group) -> None:
    cli.add_command(load)
    cli.add_command(datasets_group)
