"""The plain rules of running one run on many processes and reading from standbys."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from signdb.cli.train_commands import command_line
from signdb.config import read_database_urls_from
from signdb.errors import ConfigError, InvalidArgument
from signdb.tracking.feed import epoch_plan
from signdb.tracking.standby import pick_standby, wait_seconds
from signdb.training.distributed import timeout_seconds, world_from_env
from signdb.training.launch import threads_per_process


@pytest.mark.parametrize(
    ("images", "batch", "world", "expected"),
    [
        (59, 12, 1, (5, 59, 12)),  # one process: every image, a short last batch
        (59, 12, 2, (5, 59, 6)),  # a last batch of 11: 6 and 5
        (61, 12, 2, (5, 60, 6)),  # a last batch of 1 cannot feed two ranks: left out
        (60, 12, 4, (5, 60, 3)),
        (63, 12, 4, (5, 60, 3)),  # 3 images for 4 ranks: left out too
        (64, 12, 4, (6, 64, 3)),  # 4 images for 4 ranks: one each
        (10, None, 3, (1, 10, 4)),  # a full batch: each rank its third
        (10, 64, 2, (1, 10, 5)),  # a batch larger than the split is a full batch
    ],
)
def test_epoch_plan(images, batch, world, expected):
    plan = epoch_plan(images, batch, world)
    assert (plan.steps, plan.used, plan.batch) == expected
    assert sum(plan.size_of(k) for k in range(plan.steps)) == plan.used
    assert all(plan.size_of(k) >= world for k in range(plan.steps))  # every rank has an image


def test_epoch_plan_refusals():
    with pytest.raises(InvalidArgument, match="batch size 10 does not split evenly over 4.*8"):
        epoch_plan(100, 10, 4)
    with pytest.raises(InvalidArgument, match="3 images, fewer than the 4 processes"):
        epoch_plan(3, None, 4)


def test_world_from_torchruns_environment():
    env = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "abc",
           "TORCHELASTIC_RESTART_COUNT": "2"}  # fmt: skip
    world = world_from_env(env)
    assert (world.rank, world.world_size, world.local_rank) == (1, 4, 1)
    assert world.launch_key == "torchrun:abc" and world.restarted
    # torchrun's default rendezvous id names no launch: the agent process does.
    assert world_from_env({**env, "TORCHELASTIC_RUN_ID": "none"}).launch_key.startswith("torchrun:")
    assert world_from_env({"RANK": "0", "WORLD_SIZE": "2"}).launch_key is None  # not torchrun
    assert world_from_env({}) is None and world_from_env({"WORLD_SIZE": "1"}) is None
    with pytest.raises(InvalidArgument, match="must be integers"):
        world_from_env({"WORLD_SIZE": "two"})
    with pytest.raises(InvalidArgument, match="RANK must be in 0 .. WORLD_SIZE - 1"):
        world_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_threads_share_the_machine():
    assert threads_per_process(2, cpus=2) == 1
    assert threads_per_process(3, cpus=16) == 5


def test_read_urls_from_flags_and_the_environment(monkeypatch):
    monkeypatch.setenv("SIGNDB_READ_DATABASE_URL", "postgresql://a/x postgresql://b/x")
    assert read_database_urls_from(None) == ["postgresql://a/x", "postgresql://b/x"]
    assert read_database_urls_from(["postgresql://c/x"]) == ["postgresql://c/x"]
    assert read_database_urls_from("postgresql://a/x,postgresql://b/x") == [
        "postgresql://a/x",
        "postgresql://b/x",
    ]
    with pytest.raises(ConfigError, match="signdb needs PostgreSQL.*mysql"):
        read_database_urls_from("mysql://a/x")


def test_ranks_spread_over_the_standbys():
    standbys = ["s0", "s1", "s2"]
    assert [pick_standby(standbys, 10, rank) for rank in range(4)] == ["s1", "s2", "s0", "s1"]
    assert pick_standby([], 10, 3) is None


@pytest.mark.parametrize(
    ("name", "value", "fn"),
    [
        ("SIGNDB_READ_WAIT_SECONDS", "-1", wait_seconds),
        ("SIGNDB_READ_WAIT_SECONDS", "soon", wait_seconds),
        ("SIGNDB_DIST_TIMEOUT_SECONDS", "0", timeout_seconds),
    ],
)
def test_bad_waits_are_refused_naming_the_variable(monkeypatch, name, value, fn):
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidArgument, match=name):
        fn()


def test_the_children_get_the_options_given_on_the_command_line():
    seen = {}

    @click.command()
    @click.option("--dataset")
    @click.option("--lr", type=float)
    @click.option("--json", "as_json", is_flag=True)
    @click.option("--param", "params", multiple=True)
    @click.option("--nproc", type=int)
    @click.option("--cache", default="auto")
    def cmd(**_):
        seen["args"] = command_line(click.get_current_context(), drop={"nproc"})

    args = ["--dataset", "d", "--param", "a=1", "--param", "b=2", "--json", "--nproc", "2"]
    assert CliRunner().invoke(cmd, args).exit_code == 0
    # Defaults stay defaults (each child reads its own), --nproc is the parent's alone.
    assert seen["args"] == ["--dataset", "d", "--json", "--param", "a=1", "--param", "b=2"]
