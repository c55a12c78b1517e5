"""The signdb schema: the single source the migrations are checked against.

Tables live in schema ``signdb``. Every constraint is named by the convention
in :mod:`~signdb.db.schema.base` so migrations can refer to them. Views, SQL
functions and roles are created by the migrations themselves (SQLAlchemy
metadata does not model them). The tables are split by capability
(:mod:`~signdb.db.schema.experiments`, :mod:`~signdb.db.schema.service`) and
all importable from here.
"""

from __future__ import annotations

from signdb.db.schema.base import *  # noqa: F403 - the schema's one namespace
from signdb.db.schema.base import SCHEMA, metadata
from signdb.db.schema.experiments import *  # noqa: F403
from signdb.db.schema.service import *  # noqa: F403


# -- what Alembic compares (used by migrations/env.py and `signdb db check`) ----
def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    if type_ == "schema":
        return name == SCHEMA
    return True


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001 - Alembic hook
    # Views come back from reflection as tables; the revisions manage them by hand.
    if type_ == "table" and reflected and compare_to is None:
        return name in metadata.tables or f"{SCHEMA}.{name}" in metadata.tables
    return True


COMPARE_OPTIONS = {
    "version_table_schema": SCHEMA,
    "include_schemas": True,
    "include_name": include_name,
    "include_object": include_object,
    "compare_type": True,
}
