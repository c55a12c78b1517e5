"""``signdb serve`` and ``signdb tokens``: the web UI and JSON API, and who may use them."""

from __future__ import annotations

import errno
import os
import socket

import click

from signdb.cli.context import Context, common_options
from signdb.cli.tables import table
from signdb.errors import ConfigError, InvalidArgument


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes (they share nothing but the database).",
)
@click.option(
    "--log-predictions",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    metavar="FRACTION",
    help="Share of served predictions to log to the database (0: none).",
)
@click.option(
    "--invocations-model",
    default="champion",
    show_default=True,
    metavar="NAME",
    help="The alias (or run-<id>) MLflow's POST /invocations is answered by.",
)
@common_options
def serve(
    ctx: Context,
    host: str,
    port: int,
    workers: int,
    log_predictions: float,
    invocations_model: str,
) -> None:
    """Serve the web UI, the JSON API (/api/v1) and the models (the Open Inference
    Protocol under /v2, MLflow's /invocations) over this database until Ctrl-C.

    On a loopback address (the default) anyone on this machine may read
    without a token. On any other address every request needs a token, and
    the server refuses to start until one exists (`signdb tokens create`).
    Viewers' requests run as signdb_analyst in read-only transactions,
    editors' as signdb_writer.
    """
    import uvicorn

    from signdb.access import count_tokens
    from signdb.db.role_engines import missing_memberships
    from signdb.server import ServerSettings, is_loopback
    from signdb.server.settings import check_address

    check_address(host, port)
    engine = ctx.ready_engine()
    loopback = is_loopback(host)
    if not loopback and count_tokens(engine) == 0:
        raise InvalidArgument(
            f"refusing to listen on {host} without a token: anyone who reaches it could read "
            "every run; create one first (`signdb tokens create NAME --role viewer`, printed "
            "once) or serve on 127.0.0.1"
        )
    missing = missing_memberships(engine)
    if missing:
        login = engine.url.username or "the login"
        raise ConfigError(
            f"the database login {login!r} cannot act as {' and '.join(missing)}, which the "
            f"server's requests run as; as a superuser: GRANT {', '.join(missing)} TO {login};"
        )
    _check_port_free(host, port)
    settings = ServerSettings(
        database_url=engine.url.render_as_string(hide_password=False),
        host=host,
        port=port,
        open=loopback,
        log_predictions=log_predictions,
        invocations_model=invocations_model,
    )
    os.environ.update(settings.to_env())  # what each worker process builds its app from
    access = "open to this machine" if loopback else "tokens required"
    if ctx.as_json:
        ctx.emit({"url": settings.url, "host": host, "port": port, "workers": workers})
    else:
        click.echo(f"signdb serving {settings.url} ({access}); Ctrl-C stops")
    uvicorn.run(
        "signdb.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        timeout_graceful_shutdown=3,
    )


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise InvalidArgument(
                    f"port {port} on {host} is in use (another signdb serve?); pass --port"
                ) from None
            raise InvalidArgument(f"cannot listen on {host}:{port}: {e.strerror}") from None


@click.group("tokens")
def tokens_group() -> None:
    """Tokens for `signdb serve`: viewers read, editors also write."""


@tokens_group.command("create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "editor"]),
    default="viewer",
    show_default=True,
    help="viewer: read only; editor: may also submit, cancel and point models.",
)
@common_options
def tokens_create(ctx: Context, name: str, role: str) -> None:
    """Create a token called NAME and print it once: only its hash is stored."""
    from signdb.access import create_token

    token, record = create_token(ctx.ready_engine(), name, role)
    result = {
        "name": record.name,
        "role": record.role,
        "token": token,
        "created_at": record.created_at,
    }
    ctx.emit(
        result,
        lambda r: (
            f"{r['token']}\n(token {r['name']!r}, {r['role']}: shown once; only its hash "
            "is stored, so keep it now)"
        ),
    )


@tokens_group.command("list")
@common_options
def tokens_list(ctx: Context) -> None:
    """The tokens by name and role (the tokens themselves are not stored)."""
    from signdb.access import list_tokens

    found = [
        {"name": t.name, "role": t.role, "created_at": t.created_at}
        for t in list_tokens(ctx.ready_engine())
    ]

    def human(r: dict) -> str:
        if not r["tokens"]:
            return "no tokens; `signdb tokens create NAME --role viewer` makes one"
        rows = [["name", "role", "created"]]
        rows += [[t["name"], t["role"], f"{t['created_at']:%Y-%m-%d %H:%M}"] for t in r["tokens"]]
        return table(rows)

    ctx.emit({"tokens": found}, human)


@tokens_group.command("revoke")
@click.argument("name")
@common_options
def tokens_revoke(ctx: Context, name: str) -> None:
    """Delete the token NAME: requests carrying it are refused from now on."""
    from signdb.access import revoke_token

    revoke_token(ctx.ready_engine(), name)
    ctx.emit({"revoked": name}, lambda r: f"revoked token {r['revoked']!r}")


def register(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(tokens_group)
