"""The PostgreSQL answer store's database: connecting, the schema and its migrations, the reader
role and its privileges, and the mapping of server errors to one-sentence errors.

One database holds one study's store, in schema ``dcstore`` (tables as in the SQLite store,
``postgres_schema_v1.sql``). ``meta.schema_version`` numbers the schema: :data:`MIGRATIONS` maps
each version to the SQL that brings the one before to it; an admin connection applies the
missing ones in a transaction, a newer store is refused. The reading functions
(``postgres_functions.sql``) are re-installed when that file changes (``meta.functions_sha256``).

Roles: the role that runs ``init`` owns everything (the admin). ``init`` also creates the study's
reader role ``<database>_reader`` (LOGIN, a random password printed once): it may use the schema
and execute the five ``reader_*`` functions, nothing else: no table, no other function.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

from DigitalContrastLib.common.errors import MissingPackageError, require_package
from DigitalContrastReaderLib.study.errors import AnswerError, StoreError

from . import rules
from .reader_access import no_token_issued_error, wrong_token_error

SCHEMA = "dcstore"
SCHEMA_VERSION = 1
#: schema version -> the SQL file that brings the version before to it.
MIGRATIONS: dict[int, str] = {1: "postgres_schema_v1.sql"}
READER_FUNCTIONS = ("reader_token_params(text)", "reader_verify(text, bytea)", "reader_study()",
                    "reader_state(text, bytea, text, boolean, text)",
                    "reader_write(text, bytea, text, text, jsonb, text)")
APPEND_ONLY_TABLES = ("events", "revisions", "origins")


def sql_file(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def functions_sql() -> str:
    return sql_file("postgres_functions.sql")


def functions_sha256() -> str:
    return hashlib.sha256(functions_sql().encode("utf-8")).hexdigest()


def psycopg_module() -> Any:
    return require_package("psycopg", "psycopg[binary]", "A PostgreSQL answer store")


def safe_location(url: str) -> str:
    """``url`` without a password, for messages."""
    return re.sub(r"(postgres(?:ql)?://[^:/@]*):[^@]*@", r"\1@", url)


def url_parts(url: str) -> dict[str, str]:
    """dbname, user, host and port of a connection URL (libpq's defaults where absent)."""
    psycopg = psycopg_module()
    parts = psycopg.conninfo.conninfo_to_dict(url)
    return {"dbname": str(parts.get("dbname") or ""), "user": str(parts.get("user") or ""),
            "host": str(parts.get("host") or "localhost"), "port": str(parts.get("port") or "5432")}


def connect(url: str) -> Any:
    """An autocommit connection (transactions are explicit) with ``search_path`` = ``dcstore``.

    A password comes from the URL, ``PGPASSWORD`` or ``~/.pgpass``, as for psql.
    """
    try:
        psycopg = psycopg_module()
    except MissingPackageError:
        raise StoreError(f"{safe_location(url)}: a PostgreSQL store needs the Python package psycopg; install it "
                         "(pip install 'psycopg[binary]', or the project's 'postgres' extra).",
                         code="no_driver") from None
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=15)
        conn.execute(f"SET search_path TO {SCHEMA}, pg_catalog")
        return conn
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise StoreError(f"{safe_location(url)}: cannot connect ({reason}); check the server, the database name, the "
                         "role and its password (PGPASSWORD or ~/.pgpass).", code="connect") from None


class PgDb:
    """:class:`~DigitalContrastReaderLib.store.sql_rows.SqlDb` on a psycopg connection (``?`` becomes ``%s``)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        from psycopg.rows import dict_row

        self._rows = dict_row

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cursor = self.conn.cursor(row_factory=self._rows)
        cursor.execute(sql.replace("?", "%s"), tuple(params))
        return cursor

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            self.conn.cursor().executemany(sql.replace("?", "%s"), rows)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        return self.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        return None if row is None else next(iter(row.values()))

    def insert_id(self, sql: str, params: Sequence[Any], id_column: str) -> int:
        return self.execute(f"{sql} RETURNING {id_column}", params).fetchone()[id_column]


def reader_role_name(dbname: str) -> str:
    """The study's reader role: ``<database>_reader`` in lower case letters, digits and ``_``."""
    base = re.sub(r"[^a-z0-9_]", "_", dbname.lower()) or "study"
    return f"{base[:56]}_reader"


def schema_exists(conn: Any) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)).fetchone() is not None


def install_functions(conn: Any, reader_role: str) -> None:
    """(Re)install the reading functions and give the reader role exactly its privileges."""
    from psycopg import sql

    conn.execute(functions_sql())
    role = sql.Identifier(reader_role)
    conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM PUBLIC").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(sql.Identifier(SCHEMA), role))
    conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM PUBLIC").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {} FROM PUBLIC").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {} FROM {}").format(sql.Identifier(SCHEMA), role))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC").format(
        sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(SCHEMA), role))
    for signature in READER_FUNCTIONS:
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}.").format(sql.Identifier(SCHEMA))
                     + sql.SQL(signature) + sql.SQL(" TO {}").format(role))


def create_reader_role(conn: Any, reader_role: str, dbname: str) -> str:
    """Create (or reset) the reader role with a new random password; returns the password."""
    from psycopg import sql

    password = secrets.token_urlsafe(18)
    role = sql.Identifier(reader_role)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (reader_role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
        role, sql.Literal(password)))
    # a reading station that stops mid-transaction must not hold the event chain for long
    conn.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = '60s'").format(role))
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), role))
    return password


def migrate(conn: Any, current: int) -> list[int]:
    """Apply the migrations after ``current`` (inside the caller's transaction); returns them."""
    applied = []
    for version in sorted(MIGRATIONS):
        if version > current:
            conn.execute(sql_file(MIGRATIONS[version]))
            applied.append(version)
    return applied


# --------------------------------------------------------------------------------------------
# Server errors -> one sentence
# --------------------------------------------------------------------------------------------

_READING_ERRORS = {
    "DCS01": ("already_submitted", "Item '{item}' was already submitted; it cannot be submitted again."),
    "DCS02": ("not_submitted", "Item '{item}' has not been submitted yet; submit it before changing it."),
}


def reading_error(error: Any, location: str, reader_id: str, item_id: str | None) -> Exception:
    """The one-sentence error of a failed reading call (``error``: a psycopg error)."""
    state = getattr(error, "sqlstate", None) or ""
    if state == "DCT01":
        return wrong_token_error(reader_id)
    if state == "DCT02":
        return no_token_issued_error(reader_id)
    if state == "DCN01":
        return rules.not_enrolled_reader_error(reader_id)
    if state == "DCO01":
        return rules.unknown_item_error(item_id or "?", location)
    if state == "DCO02":
        return AnswerError(f"Item '{item_id}' belongs to another reader, not '{reader_id}'; check the reader id.",
                           code="wrong_reader")
    if state in _READING_ERRORS:
        code, text = _READING_ERRORS[state]
        return AnswerError(text.format(item=item_id), code=code)
    return store_error(error, location)


def store_error(error: Any, location: str) -> StoreError:
    """A StoreError for a server error that is not the reader's doing."""
    state = getattr(error, "sqlstate", None) or ""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if state == "42501":
        return StoreError(f"{location}: the server refused it ({detail}); this role may not do that (reading stations "
                          "connect as the study's reader role, admin commands as its admin role).", code="denied")
    if state == "DCA01":
        return StoreError(f"{location}: the server refused it ({detail}); the audit trail cannot be changed.",
                          code="append_only")
    return StoreError(f"{location}: the server refused or lost the transaction ({detail}); nothing was written; "
                      "retry, and run 'digital-contrast-reader check' if it persists.", code="server")
