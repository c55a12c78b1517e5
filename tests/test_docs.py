"""Every code block of README.md and docs/*.md runs, in order, as a reader would run it.

One test per page, on a fresh database, in a scratch folder holding what the pages
refer to: ``photos/`` (three classes of small photos) and an already-fetched copy of
Sign Language Digits (24 images a digit) in the download cache, so
``signdb datasets fetch`` finds it there as it would after a first download.

- ``sh`` blocks run in bash (``set -e``, and a failing pipe fails), with ``signdb`` on
  the PATH and ``$SIGNDB_DATABASE_URL`` naming the page's database; ``zsh`` blocks in zsh;
- ``python`` blocks are saved, in order, as one script per page and run with
  ``python script.py`` in a fresh interpreter, as a reader would save and run them (no
  ``if __name__ == "__main__":`` guard; a load's decoding workers must not re-run it);
- ``sql`` blocks run as ``signdb_analyst`` once the page's other blocks have run
  (docs/analyst-guide.md's are checked row by row in tests/db/test_analyst_guide.py);
- ``text`` blocks are not run: those of docs/cli.md are generated and checked by
  tests/cli/test_docs.py; any other is marked ``<!-- test: output -->`` (what a command
  printed) or ``<!-- test: diagram -->``.

A comment on the line before a block changes that: ``<!-- test: embedded -->`` runs it
against a private embedded server (no URL), ``<!-- test: skip REASON -->`` does not run
it and says why (the network, the whole suite). Separately, every ``signdb`` command line
is expanded by bash and by zsh: both must give the same words, without quotes to protect
them (zsh stops at an unmatched glob such as ``[64]``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from signdb.data.fetch import REGISTRY
from tests.helpers import named_tree

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KINDS = ("sh", "zsh", "fish", "python", "sql", "text")
FENCE = re.compile(r"^(?:<!-- test: (?P<mark>[^>]*?) -->\n)?```(?P<kind>\w*)\n(?P<code>.*?)^```$",
                   re.S | re.M)  # fmt: skip
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Block:
    page: str
    kind: str
    code: str
    mark: str  # "", "embedded", "output", "diagram", "skip REASON"
    line: int

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(
            page.name,
            m["kind"],
            m["code"],
            (m["mark"] or "").strip(),
            text.count("\n", 0, m.start("code")),
        )  # fmt: skip
        for m in FENCE.finditer(text)
    ]


def test_every_block_is_of_a_known_kind_and_every_skip_says_why():
    for page in PAGES:
        for block in blocks(page):
            assert block.kind in KINDS, f"{block.where}: unknown block kind {block.kind!r}"
            if block.mark.startswith("skip"):
                assert len(block.mark.split(maxsplit=1)) == 2, f"{block.where}: skip needs a reason"
            else:
                assert block.mark in ("", "embedded", "output", "diagram"), block.where
            if block.kind == "text" and page.name != "cli.md":
                assert block.mark in ("output", "diagram"), f"{block.where}: mark it output"
            if block.mark in ("output", "diagram"):
                assert block.kind == "text", f"{block.where}: only text blocks are not run"


@pytest.fixture
def workdir(tmp_path: Path, mini_dataset_dir: Path) -> Path:
    """The reader's folder: photos/, and a data home whose cache holds the digits."""
    work = tmp_path / "work"
    named_tree(work / "photos", ["astronaut", "cat", "rocket"], 16)
    spec = REGISTRY["sign-language-digits"]
    cache = tmp_path / "home" / "cache" / spec.name
    digest = "d" * 64  # what a first fetch records for the registry URL (trust on first use)
    shutil.copytree(mini_dataset_dir, cache / digest[:12] / spec.archive_root)
    (cache / "sources.json").write_text(json.dumps({spec.url: digest}))
    return work


@pytest.fixture(scope="module")
def embedded_home():
    """A private embedded server's data home (enterable by the server user when root)."""
    from signdb.db.embedded import EmbeddedServer

    root = Path(tempfile.mkdtemp(prefix="signdb-docs-"))
    root.chmod(0o755)
    yield root / "home"
    EmbeddedServer(root / "home").stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


def _env(db_url: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "SIGNDB_DATABASE_URL": db_url,
        "SIGNDB_HOME": str(home),
        "COLUMNS": "100",
    }


def run_sh(block: Block, cwd: Path, env: dict[str, str]) -> str:
    shell = ["zsh", "-e"] if block.kind == "zsh" else ["bash", "-e", "-o", "pipefail"]
    if shutil.which(shell[0]) is None:
        pytest.fail(
            f"{block.where} is a {shell[0]} block and {shell[0]} is not installed "
            f"(apt install {shell[0]}; `make test` installs it)"
        )
    done = subprocess.run(
        [*shell, "-c", block.code],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"{block.where} failed:\n{block.code}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def run_python(python: list[Block], cwd: Path, env: dict[str, str]) -> None:
    script = cwd / f"{python[0].page.removesuffix('.md')}.py"
    script.write_text("\n".join(b.code for b in python))
    done = subprocess.run(
        [sys.executable, script.name],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    where = ", ".join(b.where for b in python)
    assert done.returncode == 0, f"{where} failed as a script:\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr


def run_sql(block: Block, db_url: str) -> None:
    info = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(info, options="-c role=signdb_analyst") as conn:
        for statement in filter(str.strip, block.code.split(";")):
            conn.execute(statement)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_page_runs(page: Path, db_url: str, workdir: Path, embedded_home: Path):
    env = _env(db_url, workdir.parent / "home")
    page_blocks = blocks(page)
    python = [b for b in page_blocks if b.kind == "python" and not b.mark.startswith("skip")]
    sql_blocks = []
    for block in page_blocks:
        if block.mark.startswith("skip") or block.kind == "text":
            continue
        if block.kind == "fish":
            raise AssertionError(f"{block.where}: fish blocks cannot run here; mark them skip")
        if block.kind in ("sh", "zsh") and block.mark == "embedded":
            private = {**env, "SIGNDB_HOME": str(embedded_home)}
            del private["SIGNDB_DATABASE_URL"]
            run_sh(block, workdir, private)
        elif block.kind in ("sh", "zsh"):
            run_sh(block, workdir, env)
        elif block.kind == "python" and block == python[-1]:
            run_python(python, workdir, env)
        elif block.kind == "sql" and page.name != "analyst-guide.md":
            sql_blocks.append(block)
    for block in sql_blocks:
        run_sql(block, db_url)


def _command_lines() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for block in blocks(page):
            if block.kind not in ("sh", "zsh"):
                continue
            for line in block.code.replace("\\\n", " ").splitlines():
                words = line.split("#", 1)[0].strip().removesuffix("&").strip()
                if words.startswith("signdb ") and "$" not in words:
                    out.append((f"{block.where}", words))
    return out


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (apt install zsh)")
def test_every_command_line_means_the_same_in_bash_and_zsh(tmp_path: Path):
    """Run in a folder holding files named like parts of a glob, as a user's might."""
    for name in ("1", "6", "4", "a"):
        (tmp_path / name).touch()
    lines = _command_lines()
    assert len(lines) >= 20
    for where, line in lines:
        probe = "printf '%s\\n' " + line.removeprefix("signdb ")
        words = {}
        for shell in ("bash", "zsh"):
            done = subprocess.run([shell, "-c", probe], cwd=tmp_path, capture_output=True,
                                  text=True, timeout=30)  # fmt: skip
            assert done.returncode == 0 and not done.stderr, (where, shell, line, done.stderr)
            words[shell] = done.stdout.splitlines()
        assert words["bash"] == words["zsh"] == shlex.split(line)[1:], (where, line)
        assert not set("'\"[]{}*?") & set(line), f"{where}: quotes or glob characters in {line!r}"


def test_every_relative_link_and_anchor_resolves():
    for page in PAGES:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.name}: broken link {target}"
            if anchor and resolved.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", resolved.read_text(), flags=re.M)
                slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
                assert anchor in slugs, (
                    f"{page.name}: no heading for #{anchor} in {path or page.name}"
                )


def test_the_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    # About 12 KB with the sections other issues add (Web UI, queue, serving, scaling out).
    assert len(text.encode()) <= 12_800
    for heading in ("## Install", "## Quickstart", "## Make targets", "## How signdb compares",
                    "## FAQ", "## Documentation", "**Contents:**"):  # fmt: skip
        assert heading in text
    assert "DEMO_TIME" not in text and "TEST_TIME" not in text  # the measured times are in


def test_license_and_notice():
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text
    notice = (ROOT / "NOTICE").read_text()
    assert "Sign Language Digits" in notice and "uPlot" in notice and "MIT" in notice
