"""`signdb datasets list | show | fetch` through the real entry point."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from pathlib import Path

from signdb.data.splits import split_of
from tests.cli.test_cli_load import copy_subset
from tests.helpers import signdb


def show(name: str, *args: str) -> dict:
    result = signdb("datasets", "show", name, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def sql_splits(pg, seed: int, fraction: float) -> dict[str, tuple[int, str]]:
    """sha256 -> (label, split) as the database computes it."""
    rows = pg.execute(
        "SELECT sha256, label, signdb.split_of(sha256, %s, %s) FROM signdb.images",
        [seed, fraction],
    )
    return {sha: (label, split) for sha, label, split in rows}


def test_list_starts_empty(db_url):
    result = signdb("datasets", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"datasets": []}


def test_splits_are_deterministic_and_stable(db_url, pg, shared_dataset, tmp_path):
    small = copy_subset(shared_dataset, tmp_path / "small", per_label=10)
    assert signdb("load", str(small), "--dataset", "d").returncode == 0

    shown = show("d")  # defaults: seed 42, test fraction 0.15
    assert (shown["seed"], shown["test_fraction"]) == (42, 0.15)
    before = sql_splits(pg, 42, 0.15)
    assert len(before) == 100
    # The SQL function and the Python rule agree image by image ...
    for sha, (_, split) in before.items():
        assert split == split_of(sha, 42, 0.15)
    # ... and `datasets show` reports exactly their counts.
    expected = {"train": Counter(), "val": Counter(), "test": Counter()}
    for label, split in before.values():
        expected[split][str(label)] += 1
    assert {s: Counter(c) for s, c in shown["splits"].items()} == expected
    assert sum(shown["splits"]["test"].values()) > 0
    assert show("d") == shown  # same (seed, fraction), same split

    other_seed = sql_splits(pg, 7, 0.15)
    assert any(other_seed[sha][1] != before[sha][1] for sha in before)
    bigger = sql_splits(pg, 42, 0.5)
    assert sum(split == "test" for _, split in bigger.values()) > sum(
        split == "test" for _, split in before.values()
    )

    # More images later (the first 10 per label again, plus 10 new ones each).
    more = copy_subset(shared_dataset, tmp_path / "more", per_label=20)
    loaded = json.loads(signdb("load", str(more), "--dataset", "d", "--json").stdout)
    assert (loaded["added"], loaded["skipped_duplicates"]) == (100, 100)
    after = sql_splits(pg, 42, 0.15)
    assert len(after) == 200
    assert {sha: after[sha] for sha in before} == before


def test_show_human_table(db_url, shared_dataset, tmp_path):
    tree = copy_subset(shared_dataset, tmp_path / "tree", per_label=2)
    assert signdb("load", str(tree), "--dataset", "d", "--size", "32").returncode == 0
    result = signdb("datasets", "show", "d", "--seed", "1", "--test-fraction", "0.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dataset 'd': 20 images, 32x32 gray (lanczos)")
    assert "seed 1, test fraction 0.5" in lines[0]
    assert lines[1].split() == ["label", "class", "images", "train", "test"]
    assert lines[2].split()[:3] == ["0", "0", "2"]
    total = lines[-1].split()
    assert total[:2] == ["total", "20"] and int(total[2]) + int(total[3]) == 20
    listed = signdb("datasets", "list").stdout.splitlines()
    assert listed[1].split() == ["d", "20", "10", "32x32", "gray", "(lanczos)"]


def test_show_errors(db_url):
    missing = signdb("datasets", "show", "nope")
    assert missing.returncode == 1
    assert "no dataset named 'nope'" in missing.stderr
    assert "signdb load PATH --dataset nope" in missing.stderr
    bad = signdb("datasets", "show", "nope", "--test-fraction", "1.5")
    assert bad.returncode == 1
    [line] = bad.stderr.splitlines()
    assert "test fraction must be between 0 and 1 (exclusive), got 1.5" in line


# --- fetch -----------------------------------------------------------------------


def _archive(shared: Path, dest: Path) -> tuple[Path, str]:
    """A zip laid out like the upstream archive, from 2 images per label."""
    with zipfile.ZipFile(dest, "w") as zf:
        for label_dir in sorted(p for p in shared.iterdir() if p.is_dir()):
            for f in sorted(label_dir.iterdir())[:2]:
                zf.write(
                    f, f"Sign-Language-Digits-Dataset-master/Dataset/{label_dir.name}/{f.name}"
                )
    return dest, hashlib.sha256(dest.read_bytes()).hexdigest()


def test_fetch_verifies_caches_and_loads(db_url, shared_dataset, tmp_path):
    archive, digest = _archive(shared_dataset, tmp_path / "digits.zip")
    env = {"SIGNDB_HOME": str(tmp_path / "home")}  # a private cache
    args = ["datasets", "fetch", "--url", archive.as_uri(), "--sha256", digest, "--json"]
    first = signdb(*args, env=env)
    assert first.returncode == 0, first.stderr
    path = Path(json.loads(first.stdout)["path"])
    assert path.is_relative_to(tmp_path / "home" / "cache")
    assert sorted(p.name for p in path.iterdir()) == [str(d) for d in range(10)]

    archive.unlink()  # a second fetch must come from the cache
    again = signdb(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"path": str(path)}

    loaded = json.loads(signdb("load", str(path), "--dataset", "d", "--json").stdout)
    assert loaded["images"] == 20


def test_fetch_refuses_a_wrong_checksum(shared_dataset, tmp_path):
    archive, digest = _archive(shared_dataset, tmp_path / "digits.zip")
    env = {"SIGNDB_HOME": str(tmp_path / "home")}
    wrong = "0" * 64
    result = signdb("datasets", "fetch", "--url", archive.as_uri(), "--sha256", wrong, env=env)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert f"checksum mismatch for {archive.as_uri()}" in line
    assert f"expected sha256 {wrong}, got {digest}" in line
    assert not list((tmp_path / "home" / "cache").rglob("*.zip"))

    unpinned = signdb("datasets", "fetch", "--url", archive.as_uri(), "--json", env=env)
    assert unpinned.returncode == 0, unpinned.stderr
    [note] = unpinned.stderr.splitlines()
    assert note.startswith("note: ") and f"--sha256 {digest}" in note
    assert Path(json.loads(unpinned.stdout)["path"]).is_dir()


def test_every_data_command_and_option_has_help():
    import click

    from signdb.cli import cli

    commands = [cli.commands["load"], cli.commands["datasets"]]
    commands += list(cli.commands["datasets"].commands.values())
    assert {c.name for c in commands} == {"load", "datasets", "list", "show", "fetch", "delete"}
    for command in commands:
        assert command.help and command.help.strip(), command.name
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:  # -q/-v: on `signdb -h`
                assert param.help, f"{command.name} {param.opts}"
