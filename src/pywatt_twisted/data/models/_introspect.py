# -*- test-case-name: tests.data.models.test_live -*-
"""
Read the schema of a live database back in model terms: tables, columns (type,
nullability, default, auto-increment, comment), primary key, indexes, foreign keys and
check constraints.

    - PostgreSQL: C{pg_catalog}, in the connection's C{current_schema()} (C{public} unless
      the URL sets C{options=-csearch_path=...}).
    - MySQL/MariaDB: C{information_schema}, in the connection's C{DATABASE()}.
    - SQLite: C{sqlite_master} and the C{pragma_*} table-valued functions.

The functions here are synchronous: they take the blocking transaction of
C{Database.run_interaction} and run in its pool thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from attrs import frozen

from pywatt_twisted.data.models._ddl import ColumnType

#: Prefixes of the constraint and index names the generator gives; only those are ever
#: dropped by a migration (anything else in the database was made by someone else).
OWN_PREFIXES = ("ix_", "ux_", "uq_", "fk_", "ck_")
#: The index name prefixes among them.
INDEX_PREFIXES = ("ix_", "ux_", "uq_")


class Transaction(Protocol):
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int: ...


@frozen
class ColumnInfo:
    """
    A column as the database has it.

    @ivar default: the default expression as the database reports it (C{None}: none).
    """

    name: str
    type: ColumnType
    raw_type: str
    nullable: bool
    default: str | None
    auto_increment: bool = False
    comment: str | None = None


@frozen
class IndexInfo:
    name: str
    columns: tuple[str, ...]
    unique: bool


@frozen
class ForeignKeyInfo:
    """
    @ivar name: the constraint name (C{None} on SQLite, which does not keep it).
    """

    name: str | None
    columns: tuple[str, ...]
    table: str
    ref_columns: tuple[str, ...]
    on_delete: str
    on_update: str


@frozen
class TableInfo:
    name: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[IndexInfo, ...]
    foreign_keys: tuple[ForeignKeyInfo, ...]
    checks: tuple[str, ...]
    comment: str | None = None

    def column(self, name: str) -> ColumnInfo | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


@frozen
class DatabaseSchema:
    """
    Every table of the database (in its schema), by name.
    """

    dialect: str
    tables: Mapping[str, TableInfo]


def _text(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return value


def _action(raw: str | None) -> str:
    return (raw or "no action").strip().lower().replace(" ", "_")


_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def _quoted_values(text: str) -> tuple[str, ...]:
    return tuple(m.group(1).replace("''", "'") for m in _QUOTED.finditer(text))


def _enum_check_name(table: str, column: str) -> str:
    from pywatt_twisted.data.models._ddl import constraint_name

    return constraint_name("ck", table, column, "enum")


def _json_check_name(table: str, column: str) -> str:
    from pywatt_twisted.data.models._ddl import constraint_name

    return constraint_name("ck", table, column, "json")


# --- PostgreSQL -----------------------------------------------------------------------------

_PG_TYPES = {
    "integer": "integer",
    "bigint": "big_integer",
    "double precision": "float",
    "boolean": "boolean",
    "text": "text",
    "bytea": "bytes",
    "date": "date",
    "timestamp with time zone": "datetime",
    "jsonb": "json",
    "json": "json",
    "uuid": "uuid",
}
_PG_ACTIONS = {
    "a": "no_action",
    "r": "restrict",
    "c": "cascade",
    "n": "set_null",
    "d": "set_default",
}

_PG_COLUMNS = """
SELECT c.relname AS table_name, a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable,
       pg_get_expr(d.adbin, d.adrelid) AS default_sql, a.attidentity <> '' AS is_identity,
       col_description(c.oid, a.attnum) AS comment,
       obj_description(c.oid, 'pg_class') AS table_comment
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_PG_INDEXES = """
SELECT t.relname AS table_name, i.relname AS name, ix.indisunique AS is_unique,
       ix.indisprimary AS is_primary,
       ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema()
ORDER BY t.relname, i.relname
"""

_PG_CONSTRAINTS = """
SELECT con.conname AS name, con.contype AS kind, t.relname AS table_name,
       r.relname AS ref_table, con.confdeltype AS on_delete, con.confupdtype AS on_update,
       pg_get_constraintdef(con.oid) AS definition,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS ref_columns
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_class r ON r.oid = con.confrelid
WHERE n.nspname = current_schema() AND con.contype IN ('f', 'c')
ORDER BY t.relname, con.conname
"""

_PARAMS = re.compile(r"^(?P<base>[a-z ]+?)\s*(\((?P<args>[^)]*)\))?$")


def _pg_type(raw: str, enum_values: tuple[str, ...] | None) -> ColumnType:
    m = _PARAMS.match(raw.strip().lower())
    base, args = (m.group("base"), m.group("args")) if m else (raw, None)
    numbers = [int(x) for x in args.split(",")] if args and re.fullmatch(r"[\d,\s]+", args) else []
    if base in ("character varying", "varchar") and numbers:
        return ColumnType("varchar", length=numbers[0])
    if base == "numeric" and numbers:
        return ColumnType(
            "decimal", precision=numbers[0], scale=numbers[1] if len(numbers) > 1 else 0
        )
    kind = _PG_TYPES.get(raw.strip().lower())
    if kind == "text" and enum_values is not None:
        return ColumnType("enum", values=enum_values)
    return ColumnType(kind or f"other:{raw}")


def introspect_postgresql(tx: Transaction) -> DatabaseSchema:
    columns: dict[str, list[dict[str, Any]]] = {}
    comments: dict[str, str | None] = {}
    for row in tx.query(_PG_COLUMNS):
        columns.setdefault(row["table_name"], []).append(row)
        comments[row["table_name"]] = row["table_comment"]
    pk: dict[str, tuple[str, ...]] = {}
    indexes: dict[str, list[IndexInfo]] = {}
    for row in tx.query(_PG_INDEXES):
        cols = tuple(row["columns"] or ())
        if row["is_primary"]:
            pk[row["table_name"]] = cols
        else:
            indexes.setdefault(row["table_name"], []).append(
                IndexInfo(row["name"], cols, bool(row["is_unique"]))
            )
    fks: dict[str, list[ForeignKeyInfo]] = {}
    checks: dict[str, dict[str, str]] = {}
    for row in tx.query(_PG_CONSTRAINTS):
        table = row["table_name"]
        if row["kind"] == "f":
            fks.setdefault(table, []).append(
                ForeignKeyInfo(
                    row["name"],
                    tuple(row["columns"] or ()),
                    row["ref_table"],
                    tuple(row["ref_columns"] or ()),
                    _PG_ACTIONS.get(row["on_delete"], "no_action"),
                    _PG_ACTIONS.get(row["on_update"], "no_action"),
                )
            )
        else:
            checks.setdefault(table, {})[row["name"]] = row["definition"]
    tables = {}
    for table, rows in columns.items():
        table_checks = checks.get(table, {})
        infos = []
        for row in rows:
            enum_check = table_checks.get(_enum_check_name(table, row["name"]))
            infos.append(
                ColumnInfo(
                    name=row["name"],
                    type=_pg_type(row["type"], _quoted_values(enum_check) if enum_check else None),
                    raw_type=row["type"],
                    nullable=bool(row["nullable"]),
                    default=row["default_sql"],
                    auto_increment=bool(row["is_identity"])
                    or (row["default_sql"] or "").startswith("nextval("),
                    comment=row["comment"],
                )
            )
        tables[table] = TableInfo(
            name=table,
            columns=tuple(infos),
            primary_key=pk.get(table, ()),
            indexes=tuple(indexes.get(table, ())),
            foreign_keys=tuple(fks.get(table, ())),
            checks=tuple(sorted(table_checks)),
            comment=comments.get(table),
        )
    return DatabaseSchema("postgresql", tables)


# --- MySQL / MariaDB ------------------------------------------------------------------------

_MY_TYPES = {
    "int": "integer",
    "integer": "integer",
    "bigint": "big_integer",
    "double": "float",
    "tinyint(1)": "boolean",
    "longtext": "text",
    "longblob": "bytes",
    "date": "date",
    "datetime(6)": "datetime",
    "json": "json",
    "char(36)": "uuid",
}


def _mysql_type(raw: str, json_checked: bool) -> ColumnType:
    text = raw.strip().lower()
    if text.startswith("enum("):
        return ColumnType("enum", values=_quoted_values(raw[5:-1]))
    text = re.sub(r"^(int|bigint)\(\d+\)", r"\1", text).replace(" unsigned", " unsigned")
    m = re.fullmatch(r"varchar\((\d+)\)", text)
    if m:
        return ColumnType("varchar", length=int(m.group(1)))
    m = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", text)
    if m:
        return ColumnType("decimal", precision=int(m.group(1)), scale=int(m.group(2)))
    kind = _MY_TYPES.get(text)
    if kind == "text" and json_checked:
        return ColumnType("json")
    return ColumnType(kind or f"other:{raw}")


_MY_TABLES = (
    "SELECT TABLE_NAME AS name, TABLE_COMMENT AS comment FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'"
)
_MY_CHECKS = (
    "SELECT TABLE_NAME AS table_name, CONSTRAINT_NAME AS name, CHECK_CLAUSE AS clause "
    "FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()"
)
_MY_COLUMNS = (
    "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS name, COLUMN_TYPE AS type, "
    "IS_NULLABLE AS nullable, COLUMN_DEFAULT AS default_sql, EXTRA AS extra, "
    "COLUMN_COMMENT AS comment FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION"
)
_MY_INDEXES = (
    "SELECT TABLE_NAME AS table_name, INDEX_NAME AS name, NON_UNIQUE AS non_unique, "
    "SEQ_IN_INDEX AS seq, COLUMN_NAME AS column_name FROM information_schema.STATISTICS "
    "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"
)
_MY_FOREIGN_KEYS = (
    "SELECT k.TABLE_NAME AS table_name, k.CONSTRAINT_NAME AS name, "
    "k.COLUMN_NAME AS column_name, "
    "k.REFERENCED_TABLE_NAME AS ref_table, k.REFERENCED_COLUMN_NAME AS ref_column, "
    "k.ORDINAL_POSITION AS position, c.DELETE_RULE AS on_delete, c.UPDATE_RULE AS on_update "
    "FROM information_schema.KEY_COLUMN_USAGE k "
    "JOIN information_schema.REFERENTIAL_CONSTRAINTS c "
    "ON c.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND c.CONSTRAINT_NAME = k.CONSTRAINT_NAME "
    "AND c.TABLE_NAME = k.TABLE_NAME "
    "WHERE k.TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME IS NOT NULL "
    "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION"
)


def _mysql_checks(tx: Transaction) -> dict[str, dict[str, str]]:
    """
    C{{table: {check name: clause}}}.
    """
    checks: dict[str, dict[str, str]] = {}
    for r in tx.query(_MY_CHECKS):
        checks.setdefault(_text(r["table_name"]), {})[_text(r["name"])] = _text(r["clause"])
    return checks


def _mysql_columns(
    tx: Transaction, tables: Mapping[str, object], checks: Mapping[str, Mapping[str, str]]
) -> dict[str, list[ColumnInfo]]:
    """
    C{{table: [column, ...]}} in column order, for the base tables in C{tables}.
    """
    columns: dict[str, list[ColumnInfo]] = {}
    for r in tx.query(_MY_COLUMNS):
        table, name = _text(r["table_name"]), _text(r["name"])
        if table not in tables:
            continue  # a view
        raw_type = _text(r["type"])
        clause = checks.get(table, {}).get(name, "")
        json_checked = bool(re.search(r"json_valid\(`?" + re.escape(name) + r"`?\)", clause or ""))
        columns.setdefault(table, []).append(
            ColumnInfo(
                name=name,
                type=_mysql_type(raw_type, json_checked),
                raw_type=raw_type,
                nullable=_text(r["nullable"]) == "YES",
                default=_text(r["default_sql"]),
                auto_increment="auto_increment" in (_text(r["extra"]) or "").lower(),
                comment=_text(r["comment"]) or None,
            )
        )
    return columns


def _mysql_indexes(
    tx: Transaction,
) -> tuple[dict[str, tuple[str, ...]], dict[str, list[IndexInfo]]]:
    """
    C{({table: primary key columns}, {table: [other index, ...]})}.
    """
    stats: dict[tuple[str, str], list[tuple[int, str, bool]]] = {}
    for r in tx.query(_MY_INDEXES):
        key = (_text(r["table_name"]), _text(r["name"]))
        stats.setdefault(key, []).append(
            (int(r["seq"]), _text(r["column_name"]), not int(r["non_unique"]))
        )
    pk: dict[str, tuple[str, ...]] = {}
    indexes: dict[str, list[IndexInfo]] = {}
    for (table, name), parts in stats.items():
        cols = tuple(c for _, c, _ in sorted(parts))
        if name == "PRIMARY":
            pk[table] = cols
        else:
            indexes.setdefault(table, []).append(IndexInfo(name, cols, parts[0][2]))
    return pk, indexes


def _mysql_foreign_keys(tx: Transaction) -> dict[str, list[ForeignKeyInfo]]:
    """
    C{{table: [foreign key, ...]}}, each key's columns in order.
    """
    fk_rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in tx.query(_MY_FOREIGN_KEYS):
        fk_rows.setdefault((_text(r["table_name"]), _text(r["name"])), []).append(r)
    fks: dict[str, list[ForeignKeyInfo]] = {}
    for (table, name), rows in fk_rows.items():
        fks.setdefault(table, []).append(
            ForeignKeyInfo(
                name,
                tuple(_text(r["column_name"]) for r in rows),
                _text(rows[0]["ref_table"]),
                tuple(_text(r["ref_column"]) for r in rows),
                _action(_text(rows[0]["on_delete"])),
                _action(_text(rows[0]["on_update"])),
            )
        )
    return fks


def introspect_mysql(tx: Transaction) -> DatabaseSchema:
    comments = {_text(r["name"]): _text(r["comment"]) or None for r in tx.query(_MY_TABLES)}
    checks = _mysql_checks(tx)
    columns = _mysql_columns(tx, comments, checks)
    pk, indexes = _mysql_indexes(tx)
    fks = _mysql_foreign_keys(tx)
    tables = {
        table: TableInfo(
            name=table,
            columns=tuple(columns.get(table, ())),
            primary_key=pk.get(table, ()),
            indexes=tuple(indexes.get(table, ())),
            foreign_keys=tuple(fks.get(table, ())),
            checks=tuple(sorted(checks.get(table, {}))),
            comment=comment,
        )
        for table, comment in comments.items()
    }
    return DatabaseSchema("mysql", tables)


# --- SQLite ---------------------------------------------------------------------------------

_SQLITE_TYPES = {
    "integer": "integer",
    "int": "integer",
    "bigint": "big_integer",
    "real": "float",
    "double": "float",
    "boolean": "boolean",
    "text": "text",
    "blob": "bytes",
    "date": "date",
    "datetime": "datetime",
    "char(36)": "uuid",
}

_CONSTRAINT = re.compile(r'CONSTRAINT\s+"((?:[^"]|"")+)"\s+CHECK\s*\(', re.IGNORECASE)


def _balanced(text: str, start: int) -> str:
    """
    The text inside the parenthesis opened just before C{start}, skipping quoted parts.
    """
    depth, i, quote = 1, start, None
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = None
        elif c in ("'", '"'):
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return text[start:]


def sqlite_checks(create_sql: str) -> dict[str, str]:
    """
    The named check constraints of a SQLite C{CREATE TABLE} (and columns added later).
    """
    return {
        m.group(1).replace('""', '"'): _balanced(create_sql, m.end())
        for m in _CONSTRAINT.finditer(create_sql)
    }


def _sqlite_type(raw: str, enum_values: tuple[str, ...] | None, json_checked: bool) -> ColumnType:
    text = re.sub(r"\s+", "", raw.strip().lower())
    m = re.fullmatch(r"varchar\((\d+)\)", text)
    if m:
        return ColumnType("varchar", length=int(m.group(1)))
    m = re.fullmatch(r"decimal\((\d+),(\d+)\)", text)
    if m:
        return ColumnType("decimal", precision=int(m.group(1)), scale=int(m.group(2)))
    kind = _SQLITE_TYPES.get(text)
    if kind == "text" and enum_values is not None:
        return ColumnType("enum", values=enum_values)
    if kind == "text" and json_checked:
        return ColumnType("json")
    return ColumnType(kind or f"other:{raw}")


def introspect_sqlite(tx: Transaction) -> DatabaseSchema:
    tables = {}
    for t in tx.query(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ):
        table, create_sql = t["name"], t["sql"] or ""
        checks = sqlite_checks(create_sql)
        autoincrement = bool(re.search(r"\bAUTOINCREMENT\b", create_sql, re.IGNORECASE))
        rows = tx.query("SELECT * FROM pragma_table_info(:t) ORDER BY cid", {"t": table})
        pk = tuple(r["name"] for r in sorted((r for r in rows if r["pk"]), key=lambda r: r["pk"]))
        columns = []
        for r in rows:
            enum_check = checks.get(_enum_check_name(table, r["name"]))
            columns.append(
                ColumnInfo(
                    name=r["name"],
                    type=_sqlite_type(
                        r["type"] or "",
                        _quoted_values(enum_check) if enum_check else None,
                        _json_check_name(table, r["name"]) in checks,
                    ),
                    raw_type=r["type"] or "",
                    # an INTEGER PRIMARY KEY is never NULL, whatever the pragma says
                    nullable=not r["notnull"] and not r["pk"],
                    default=r["dflt_value"],
                    auto_increment=autoincrement and pk == (r["name"],),
                )
            )
        indexes = []
        for i in tx.query("SELECT * FROM pragma_index_list(:t) ORDER BY name", {"t": table}):
            if i["origin"] == "pk":
                continue
            cols = tuple(
                c["name"]
                for c in tx.query(
                    "SELECT * FROM pragma_index_info(:i) ORDER BY seqno", {"i": i["name"]}
                )
            )
            indexes.append(IndexInfo(i["name"], cols, bool(i["unique"])))
        fk_rows: dict[int, list[dict[str, Any]]] = {}
        for r in tx.query(
            "SELECT * FROM pragma_foreign_key_list(:t) ORDER BY id, seq", {"t": table}
        ):
            fk_rows.setdefault(r["id"], []).append(r)
        fks = tuple(
            ForeignKeyInfo(
                None,
                tuple(r["from"] for r in rs),
                rs[0]["table"],
                tuple(r["to"] for r in rs),
                _action(rs[0]["on_delete"]),
                _action(rs[0]["on_update"]),
            )
            for _, rs in sorted(fk_rows.items())
        )
        tables[table] = TableInfo(
            name=table,
            columns=tuple(columns),
            primary_key=pk,
            indexes=tuple(indexes),
            foreign_keys=fks,
            checks=tuple(sorted(checks)),
        )
    return DatabaseSchema("sqlite", tables)


INTROSPECTORS = {
    "postgresql": introspect_postgresql,
    "mysql": introspect_mysql,
    "sqlite": introspect_sqlite,
}


#: attempts at a PostgreSQL introspection that races with another session's DDL
PG_INTROSPECTION_ATTEMPTS = 3


def _dropped_meanwhile(error: Exception) -> bool:
    # pg_get_expr / pg_get_constraintdef / obj_description on a table another session
    # dropped after the catalog scan saw it (SQLSTATE XX000).
    text = f"{error} {getattr(error, 'driver_error', '')}"
    return "could not open relation with OID" in text


def introspect_transaction(tx: Transaction, dialect: str) -> DatabaseSchema:
    """
    Introspect through a blocking transaction (inside C{Database.run_interaction}).

    On PostgreSQL the catalog functions fail when another session drops a table while
    they read it; the introspection then runs again (inside a savepoint, so the
    transaction stays usable), up to L{PG_INTROSPECTION_ATTEMPTS} times.
    """
    if dialect != "postgresql":
        return INTROSPECTORS[dialect](tx)
    for attempt in range(1, PG_INTROSPECTION_ATTEMPTS + 1):
        tx.execute("SAVEPOINT pywatt_introspect")
        try:
            schema = introspect_postgresql(tx)
        except Exception as e:
            if attempt == PG_INTROSPECTION_ATTEMPTS or not _dropped_meanwhile(e):
                raise
            tx.execute("ROLLBACK TO SAVEPOINT pywatt_introspect")
            continue
        tx.execute("RELEASE SAVEPOINT pywatt_introspect")
        return schema
    raise AssertionError("unreachable")
