"""``signdb serve``: the web UI and the JSON API over the same database (FastAPI + uvicorn).

Thin like ``cli/``: each route calls one capability function with an engine
that acts as the caller's role, so PostgreSQL's grants decide what it may do.
"""

from signdb.server.app import app_from_environment, create_app
from signdb.server.settings import ServerSettings, is_loopback

__all__ = ["ServerSettings", "app_from_environment", "create_app", "is_loopback"]
