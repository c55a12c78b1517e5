"""Model aliases: a stable name (``champion``) for the run that answers it now.

``signdb models alias NAME RUN_ID`` points a name at a run that can be served
(built-in final weights, or a stored ONNX model); re-pointing is one
transaction, and the database's trigger keeps the history (who, when, from
which run to which) that ``model_alias_history`` shows. A served request
resolves the name again each time, so a re-pointed alias answers with its new
run from the next request on.

Examples
--------
>>> run_id = db.runs()[-1]["run_id"]
>>> result = set_alias(db.engine, "champion", run_id, "alice")
>>> result["name"], result["run_id"] == run_id, result["previous_run_id"]
('champion', True, None)
>>> [m["name"] for m in list_models(db.engine)]
['champion']
>>> show_model(db.engine, "champion")["history"][0]["changed_by"]
'alice'
>>> set_alias(db.engine, "run-3", run_id, "alice")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
signdb.errors.InvalidArgument: alias 'run-3' is not a valid name: ...
>>> remove_alias(db.engine, "champion", "alice")["removed_run_id"] == run_id
True
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine

from signdb.db.engine import transaction
from signdb.errors import InvalidArgument, ModelNotFound, NotFound
from signdb.serving.export import check_servable
from signdb.serving.models import RUN_NAME
from signdb.store import aliases as alias_store
from signdb.store import runs as run_store

#: The database's ck_model_aliases_name_format, checked here first for a clearer message.
ALIAS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
NAME_RULE = (
    "an alias starts with a letter or digit and holds letters, digits, '_', '.' and '-' "
    "(at most 100), and may not start with 'run-', which names a run (run-<id>)"
)


def check_alias_name(name: str) -> str:
    if not isinstance(name, str) or not ALIAS_NAME.fullmatch(name) or name.startswith("run-"):
        raise InvalidArgument(f"alias {name!r} is not a valid name: {NAME_RULE}")
    return name


def _check_who(who: str) -> str:
    if not isinstance(who, str) or not who.strip() or "\x00" in who:
        raise InvalidArgument(
            f"who changes an alias must be named (a user or token name), got {who!r}"
        )
    return who.strip()[:200]


def set_alias(engine: Engine, name: str, run_id: int, who: str) -> dict[str, Any]:
    """Point ``name`` at ``run_id`` (creating the alias if new); ``who`` is recorded."""
    check_alias_name(name)
    who = _check_who(who)
    with transaction(engine, f"pointing alias {name!r} at run {run_id}") as session:
        alias_store.lock_alias(session, name)
        check_servable(alias_store.servable(session, run_id), run_id)
        previous = alias_store.alias_run(session, name)
        changed = previous != run_id
        if changed:
            alias_store.set_alias(session, name, run_id, who)
        row = alias_store.get_alias(session, name)
    return {
        "name": name,
        "run_id": run_id,
        "previous_run_id": previous,
        "changed": changed,
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
    }


def remove_alias(engine: Engine, name: str, who: str) -> dict[str, Any]:
    """Delete the alias ``name`` (its history stays); ModelNotFound if there is none."""
    who = _check_who(who)
    with transaction(engine, f"removing alias {name!r}") as session:
        alias_store.lock_alias(session, name)
        run_id = alias_store.delete_alias(session, name, who)
    if run_id is None:
        raise ModelNotFound(f"no alias {name!r}; `signdb models list` shows the aliases")
    return {"name": name, "removed_run_id": run_id}


def list_models(engine: Engine) -> list[dict[str, Any]]:
    """Every alias with the run it points at (model, engine, dataset, status, test scores)."""
    with transaction(engine, "listing the model aliases") as session:
        return alias_store.list_aliases(session)


def show_model(engine: Engine, name: str, *, history: int = 20) -> dict[str, Any]:
    """An alias (with its last ``history`` changes) or ``run-<id>`` (with its aliases)."""
    match = RUN_NAME.fullmatch(name) if isinstance(name, str) else None
    with transaction(engine, f"reading model {name!r}") as session:
        if match:
            run_id = int(match[1])
            try:
                run = run_store.get_run(session, run_id)
            except NotFound as e:
                raise ModelNotFound(f"no model {name!r}: {e}") from None
            info = alias_store.servable(session, run_id)
            return {
                "name": name,
                "run_id": run_id,
                "model": run.model,
                "engine": run.engine,
                "dataset": run.dataset,
                "status": run.status,
                "servable": info.onnx_sha256 is not None
                or (info.engine in ("numpy", "torch") and info.has_final_weights),
                "has_onnx": info.onnx_sha256 is not None,
                "aliases": alias_store.aliases_of_run(session, run_id),
            }
        row = alias_store.get_alias(session, name)
        if row is None:
            raise ModelNotFound(
                f"no model {name!r}: no alias has that name; `signdb models list` shows the aliases"
            )
        return {**row, "history": alias_store.alias_history(session, name, history)}
