"""How one ``signdb serve`` process is configured: the database, the address, who may read.

The settings travel to uvicorn's worker processes through the environment
(``SIGNDB_SERVE_*``), so ``--workers N`` starts N identical processes, and
the server itself keeps no state: tokens live in the database, sessions are
the token in an HTTP-only cookie, and live updates are read from the database.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from signdb.errors import InvalidArgument

_ENV = "SIGNDB_SERVE_"


@dataclass(frozen=True)
class ServerSettings:
    #: The resolved database URL (password included: never printed).
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8765
    #: Whether a request without a token may read (on loopback only).
    open: bool = True
    #: Share of served predictions logged to the database (``--log-predictions``).
    log_predictions: float = 0.0
    #: The model MLflow's ``/invocations`` route answers with (an alias or ``run-<id>``).
    invocations_model: str = "champion"

    def to_env(self) -> dict[str, str]:
        return {
            f"{_ENV}DATABASE_URL": self.database_url,
            f"{_ENV}HOST": self.host,
            f"{_ENV}PORT": str(self.port),
            f"{_ENV}OPEN": "1" if self.open else "0",
            f"{_ENV}LOG_PREDICTIONS": str(self.log_predictions),
            f"{_ENV}INVOCATIONS_MODEL": self.invocations_model,
        }

    @classmethod
    def from_env(cls) -> ServerSettings:
        env = os.environ
        return cls(
            database_url=env[f"{_ENV}DATABASE_URL"],
            host=env.get(f"{_ENV}HOST", "127.0.0.1"),
            port=int(env.get(f"{_ENV}PORT", "8765")),
            open=env.get(f"{_ENV}OPEN", "1") == "1",
            log_predictions=float(env.get(f"{_ENV}LOG_PREDICTIONS", "0")),
            invocations_model=env.get(f"{_ENV}INVOCATIONS_MODEL", "champion"),
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise InvalidArgument(f"--port must be from 1 to 65535, got {port}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise InvalidArgument(
                f"--host must be an IP address to listen on (127.0.0.1, 0.0.0.0, ::1) or "
                f"localhost, got {host!r}"
            ) from None
