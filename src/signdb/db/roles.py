"""The two cluster-wide roles and their per-database grants.

Roles belong to the whole PostgreSQL cluster while the signdb schema belongs to
one database, and many databases (every test database, for one) share the
roles. So roles are created idempotently, privileges are granted per database,
and a downgrade drops a role only when no other database still depends on it.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

ANALYST = "signdb_analyst"
WRITER = "signdb_writer"
ROLES = (ANALYST, WRITER)


def create_roles_sql() -> list[str]:
    # One DO block per role: a concurrent CREATE ROLE from another database's
    # migration raises duplicate_object, which only that block swallows.
    return [
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$"""
        for role in ROLES
    ]


#: Tables neither role may touch: the server's token hashes are read by the
#: server's own login only, so no analyst can list who holds access.
PRIVATE_TABLES = ("api_tokens",)


def grant_sql(schema: str = "signdb") -> list[str]:
    """Grants for every object that exists now; each revision re-runs them."""
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {ANALYST}, {WRITER}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {ANALYST}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {WRITER}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {WRITER}",
        f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {ANALYST}, {WRITER}",
        *(_revoke_private(schema, table) for table in PRIVATE_TABLES),
    ]


def _revoke_private(schema: str, table: str) -> str:
    # The table exists only from revision 0013 on; grant_sql also runs below it.
    return f"""
        DO $$ BEGIN
            IF to_regclass('{schema}.{table}') IS NOT NULL THEN
                REVOKE ALL ON {schema}.{table} FROM {ANALYST}, {WRITER};
            END IF;
        END $$"""


def optuna_grant_sql(schema: str = "optuna") -> list[str]:
    """Sweep workers read and write Optuna's tables; analysts only read them.

    Default privileges cover tables a later ``optuna storage upgrade``, run by
    the same owner, may add.
    """
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {ANALYST}, {WRITER}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {ANALYST}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {WRITER}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {WRITER}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {ANALYST}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {WRITER}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {WRITER}",
    ]


def queue_grant_sql(schema: str = "procrastinate") -> list[str]:
    """The run queue (procrastinate's schema): workers and submitters use it, analysts read it.

    procrastinate's functions are SECURITY INVOKER, so the table grants decide what
    a caller may do; EXECUTE is taken from PUBLIC all the same, so the analyst
    cannot even call them.
    """
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {ANALYST}, {WRITER}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {ANALYST}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {WRITER}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {WRITER}",
        f"REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC",
        f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {WRITER}",
    ]


def revoke_sql(schema: str = "signdb") -> list[str]:
    roles = ", ".join(ROLES)
    return [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {roles}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {roles}",
        f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {schema} FROM {roles}",
        f"REVOKE ALL ON SCHEMA {schema} FROM {roles}",
    ]


def drop_unused_roles_sql() -> list[str]:
    """Drop each role only if no database in the cluster still references it."""
    return [  # role names are module constants, never user input
        f"""
        DO $$ BEGIN
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}')
               AND NOT EXISTS (SELECT FROM pg_shdepend d JOIN pg_roles r ON d.refobjid = r.oid
                               WHERE r.rolname = '{role}')
               AND NOT EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON m.roleid = r.oid
                               WHERE r.rolname = '{role}') THEN
                DROP ROLE {role};
            END IF;
        EXCEPTION WHEN dependent_objects_still_exist OR undefined_object THEN NULL;
        END $$"""  # noqa: S608
        for role in ROLES
    ]


def grant_roles(engine: Engine) -> None:
    """Create the roles if missing and grant them on every object of this database."""
    from signdb.db.engine import translate_errors

    with translate_errors(engine, "granting the roles"), engine.begin() as conn:
        for statement in create_roles_sql() + grant_sql():
            conn.execute(text(statement))
