# -*- test-case-name: tests.data.models.test_ddl -*-
"""
DDL generation, one L{Dialect} per database: type mapping, quoting, literals, constraint
names, and the statements a migration needs.

Type mapping (model type -> PostgreSQL / MySQL, MariaDB / SQLite)::

    integer      integer                   INT             INTEGER
    big_integer  bigint                    BIGINT          BIGINT
    float        double precision          DOUBLE          REAL
    decimal      numeric(p, s)             DECIMAL(p, s)   DECIMAL(p, s)
    boolean      boolean                   TINYINT(1)      BOOLEAN
    text         text                      LONGTEXT        TEXT
    varchar      varchar(n)                VARCHAR(n)      VARCHAR(n)
    bytes        bytea                     LONGBLOB        BLOB
    date         date                      DATE            DATE
    datetime     timestamp with time zone  DATETIME(6)     DATETIME
    json         jsonb                     JSON            TEXT + CHECK (json_valid)
    uuid         uuid                      CHAR(36)        CHAR(36)
    enum         text + CHECK (IN ...)     ENUM(...)       TEXT + CHECK (IN ...)

Names are deterministic so that generated DDL diffs cleanly and migrations can find what
they created: C{pk_<table>}, C{uq_<table>_<column>} (unique fields), C{ix_/ux_<table>_<columns>}
(indexes), C{fk_<table>_<column>}, C{ck_<table>_<column>} (field checks),
C{ck_<table>_<column>_enum}, C{ck_<table>_<column>_json} and C{ck_<table>_<name>}; any
longer than 63 characters is shortened with a hash suffix.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from attrs import frozen

from pywatt_twisted.data.models._model import NOW, Field, Index, Model, Schema
from pywatt_twisted.errors import ConfigurationError

#: Accepted spellings of each dialect name.
DIALECT_ALIASES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "pg": "postgresql",
    "psql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
}

MAX_NAME = 63


def constraint_name(*parts: str) -> str:
    """
    Join name parts with underscores, shortening to 63 characters with a stable hash
    suffix when needed.
    """
    name = "_".join(parts)
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


@frozen
class ColumnType:
    """
    A column type as a dialect stores it, in model terms: what introspection reports and
    what the schema diff compares.

    @ivar kind: a model field type (C{integer}, C{varchar}...).
    """

    kind: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind == "varchar":
            return f"varchar({self.length})"
        if self.kind == "decimal":
            return f"decimal({self.precision}, {self.scale})"
        if self.kind == "enum":
            return f"enum({', '.join(self.values)})"
        return self.kind


def index_name(model: Model, index: Index) -> str:
    """
    The name of an index: its own, or C{ix_<table>_<columns>} (C{ux_} when unique).
    """
    if index.name:
        return index.name
    return constraint_name("ux" if index.unique else "ix", model.name, *index.columns)


def all_indexes(model: Model) -> list[tuple[str, Index]]:
    """
    Every index the model implies, named: unique fields (C{uq_<table>_<column>}) in field
    order, then declared indexes in order. A unique field that is the sole primary key gets
    none (the key is unique already).
    """
    out: list[tuple[str, Index]] = []
    for f in model.fields:
        if f.unique and model.primary_key_columns != (f.name,):
            out.append((constraint_name("uq", model.name, f.name), Index((f.name,), unique=True)))
    for index in model.indexes:
        out.append((index_name(model, index), index))
    return out


def check_constraints(model: Model, f: Field, dialect: Dialect) -> list[tuple[str, str]]:
    """
    The named check constraints of one field (its own C{check}, and the enum / json checks
    of dialects without the native type) as C{(name, expression)}.
    """
    out = []
    column = dialect.quote(f.name)
    if f.type == "enum" and not dialect.native_enum:
        values = ", ".join(dialect.string_literal(v) for v in f.values)
        out.append((constraint_name("ck", model.name, f.name, "enum"), f"{column} IN ({values})"))
    if f.type == "json" and dialect.json_check:
        out.append(
            (
                constraint_name("ck", model.name, f.name, "json"),
                f"{column} IS NULL OR json_valid({column})",
            )
        )
    if f.check:
        out.append((constraint_name("ck", model.name, f.name), f.check))
    return out


class Dialect:
    """
    What differs between databases. Subclasses set the class attributes and override the
    hooks; instances are stateless.
    """

    name: ClassVar[str]
    #: Whether DDL runs inside a transaction (all-or-nothing migrations).
    transactional_ddl: ClassVar[bool] = True
    native_enum: ClassVar[bool] = False
    json_check: ClassVar[bool] = False
    has_comments: ClassVar[bool] = True
    identifier_quote: ClassVar[str] = '"'
    #: Actions this dialect treats as the same (MySQL: restrict is no action).
    action_aliases: ClassVar[dict[str, str]] = {}

    # --- names and literals

    def quote(self, identifier: str) -> str:
        q = self.identifier_quote
        return f"{q}{identifier.replace(q, q + q)}{q}"

    def quote_list(self, identifiers: Iterable[str]) -> str:
        return ", ".join(self.quote(i) for i in identifiers)

    def string_literal(self, value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    # --- types

    def sql_type(self, model: Model, f: Field) -> str:
        raise NotImplementedError

    def stored_type(self, model: Model, f: Field) -> ColumnType:
        """
        The type introspection will report for this field on this dialect.
        """
        return ColumnType(
            f.type, f.length, f.precision, (f.scale or 0) if f.type == "decimal" else None, f.values
        )

    def boolean_literal(self, value: bool) -> str:
        return "1" if value else "0"

    def now_sql(self) -> str:
        return "CURRENT_TIMESTAMP"

    def default_sql(self, f: Field) -> str | None:
        """
        The SQL of a field's default, or C{None}.
        """
        value = f.default
        if value is None or f.auto_increment:
            return None
        t = f.type
        if t == "boolean":
            return self.boolean_literal(bool(value))
        if t in ("integer", "big_integer"):
            return str(int(value))
        if t == "float":
            return repr(float(value))
        if t == "decimal":
            return format(decimal.Decimal(str(value)), "f")
        if t == "datetime":
            return self.now_sql()
        if t == "date" and isinstance(value, datetime.date):
            return self.string_literal(value.isoformat())
        return self.string_literal(str(value))

    # --- statements

    def column_sql(self, model: Model, f: Field) -> str:
        parts = [self.quote(f.name), self.sql_type(model, f)]
        parts.extend(self.column_extras(model, f))
        return " ".join(parts)

    def column_extras(self, model: Model, f: Field) -> list[str]:
        parts = []
        if not f.nullable or f.name in model.primary_key_columns:
            parts.append("NOT NULL")
        default = self.default_sql(f)
        if default is not None:
            parts.append(f"DEFAULT {default}")
        return parts

    def foreign_key_sql(self, f: Field) -> str:
        fk = f.foreign_key
        assert fk is not None
        sql = f"REFERENCES {self.quote(fk.table)} ({self.quote(fk.column)})"
        for keyword, action in (("DELETE", fk.on_delete), ("UPDATE", fk.on_update)):
            if action != "no_action":
                sql += f" ON {keyword} {action.replace('_', ' ').upper()}"
        return sql

    def foreign_key_constraint(self, model: Model, f: Field) -> str:
        return (
            f"CONSTRAINT {self.quote(fk_name(model, f))} FOREIGN KEY ({self.quote(f.name)}) "
            + self.foreign_key_sql(f)
        )

    def table_constraints(self, model: Model, deferred: Sequence[str]) -> list[str]:
        out = []
        pk = model.primary_key_columns
        if pk:
            out.append(
                f"CONSTRAINT {self.quote(constraint_name('pk', model.name))} "
                f"PRIMARY KEY ({self.quote_list(pk)})"
            )
        for f in model.fields:
            if f.foreign_key is not None and f.name not in deferred:
                out.append(self.foreign_key_constraint(model, f))
        for f in model.fields:
            for name, expression in check_constraints(model, f, self):
                out.append(f"CONSTRAINT {self.quote(name)} CHECK ({expression})")
        for check in model.checks:
            out.append(
                f"CONSTRAINT {self.quote(constraint_name('ck', model.name, check.name))} "
                f"CHECK ({check.expression})"
            )
        return out

    def table_options(self, model: Model) -> str:
        return ""

    def create_table(self, model: Model, deferred: Sequence[str] = ()) -> list[str]:
        """
        C{CREATE TABLE} for a model, then its indexes and comments.

        @param deferred: fields whose foreign key must be added later (the target table
            does not exist yet); see L{add_foreign_key}.
        """
        lines = [self.column_sql(model, f) for f in model.fields]
        lines.extend(self.table_constraints(model, deferred))
        body = ",\n".join(f"    {line}" for line in lines)
        statements = [
            f"CREATE TABLE {self.quote(model.name)} (\n{body}\n){self.table_options(model)}"
        ]
        for name, index in all_indexes(model):
            statements.append(self.create_index(model.name, name, index))
        statements.extend(self.comment_statements(model))
        return statements

    def comment_statements(self, model: Model) -> list[str]:
        return []

    def create_index(self, table: str, name: str, index: Index) -> str:
        unique = "UNIQUE " if index.unique else ""
        columns = self.quote_list(index.columns)
        return f"CREATE {unique}INDEX {self.quote(name)} ON {self.quote(table)} ({columns})"

    def drop_index(self, table: str, name: str) -> str:
        return f"DROP INDEX {self.quote(name)}"

    def add_column(self, model: Model, f: Field) -> list[str]:
        column = self.column_sql(model, f)
        checks = " ".join(
            f"CONSTRAINT {self.quote(name)} CHECK ({expression})"
            for name, expression in check_constraints(model, f, self)
        )
        sql = f"ALTER TABLE {self.quote(model.name)} ADD COLUMN {column}"
        if checks:
            sql += " " + checks
        statements = [sql]
        if f.foreign_key is not None:
            statements.extend(self.add_foreign_key(model, f))
        statements.extend(self.column_comment_statements(model, f))
        return statements

    def column_comment_statements(self, model: Model, f: Field) -> list[str]:
        return []

    def drop_column(self, table: str, column: str) -> list[str]:
        return [f"ALTER TABLE {self.quote(table)} DROP COLUMN {self.quote(column)}"]

    def add_foreign_key(self, model: Model, f: Field) -> list[str]:
        return [f"ALTER TABLE {self.quote(model.name)} ADD {self.foreign_key_constraint(model, f)}"]

    def drop_foreign_key(self, table: str, name: str) -> list[str]:
        return [f"ALTER TABLE {self.quote(table)} DROP CONSTRAINT {self.quote(name)}"]

    def alter_column(
        self, model: Model, f: Field, *, type_: bool, nullable: bool, default: bool
    ) -> list[str]:
        """
        Statements that bring an existing column to the field's type, nullability and
        default (only the aspects flagged).
        """
        raise NotImplementedError

    def drop_check(self, table: str, name: str) -> list[str]:
        return [f"ALTER TABLE {self.quote(table)} DROP CONSTRAINT {self.quote(name)}"]

    def add_check(self, table: str, name: str, expression: str) -> list[str]:
        return [
            f"ALTER TABLE {self.quote(table)} ADD CONSTRAINT {self.quote(name)} "
            f"CHECK ({expression})"
        ]


def fk_name(model: Model, f: Field) -> str:
    """
    The foreign key constraint name of a field: C{fk_<table>_<column>}.
    """
    return constraint_name("fk", model.name, f.name)


class PostgreSQL(Dialect):
    name = "postgresql"

    _types: ClassVar[dict[str, str]] = {
        "integer": "integer",
        "big_integer": "bigint",
        "float": "double precision",
        "boolean": "boolean",
        "text": "text",
        "bytes": "bytea",
        "date": "date",
        "datetime": "timestamp with time zone",
        "json": "jsonb",
        "uuid": "uuid",
        "enum": "text",
    }

    def sql_type(self, model: Model, f: Field) -> str:
        if f.type == "varchar":
            return f"varchar({f.length})"
        if f.type == "decimal":
            return f"numeric({f.precision}, {f.scale or 0})"
        return self._types[f.type]

    def boolean_literal(self, value: bool) -> str:
        return "true" if value else "false"

    def column_extras(self, model: Model, f: Field) -> list[str]:
        parts = []
        if f.auto_increment:
            parts.append("GENERATED BY DEFAULT AS IDENTITY")
        return parts + super().column_extras(model, f)

    def comment_statements(self, model: Model) -> list[str]:
        out = []
        if model.comment is not None:
            out.append(
                f"COMMENT ON TABLE {self.quote(model.name)} IS {self.string_literal(model.comment)}"
            )
        for f in model.fields:
            out.extend(self.column_comment_statements(model, f))
        return out

    def column_comment_statements(self, model: Model, f: Field) -> list[str]:
        if f.comment is None:
            return []
        return [
            f"COMMENT ON COLUMN {self.quote(model.name)}.{self.quote(f.name)} IS "
            f"{self.string_literal(f.comment)}"
        ]

    def alter_column(
        self, model: Model, f: Field, *, type_: bool, nullable: bool, default: bool
    ) -> list[str]:
        table, column = self.quote(model.name), self.quote(f.name)
        prefix = f"ALTER TABLE {table} ALTER COLUMN {column}"
        out = []
        if type_:
            sql_type = self.sql_type(model, f)
            out.append(f"{prefix} TYPE {sql_type} USING {column}::{sql_type}")
        if nullable:
            out.append(f"{prefix} {'DROP' if f.nullable else 'SET'} NOT NULL")
        if default:
            value = self.default_sql(f)
            out.append(
                f"{prefix} DROP DEFAULT" if value is None else f"{prefix} SET DEFAULT {value}"
            )
        return out


class MySQL(Dialect):
    name = "mysql"
    transactional_ddl = False
    native_enum = True
    identifier_quote = "`"
    action_aliases: ClassVar[dict[str, str]] = {"restrict": "no_action"}

    _types: ClassVar[dict[str, str]] = {
        "integer": "INT",
        "big_integer": "BIGINT",
        "float": "DOUBLE",
        "boolean": "TINYINT(1)",
        "text": "LONGTEXT",
        "bytes": "LONGBLOB",
        "date": "DATE",
        "datetime": "DATETIME(6)",
        "json": "JSON",
        "uuid": "CHAR(36)",
    }

    def string_literal(self, value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

    def sql_type(self, model: Model, f: Field) -> str:
        if f.type == "varchar":
            return f"VARCHAR({f.length})"
        if f.type == "decimal":
            return f"DECIMAL({f.precision}, {f.scale or 0})"
        if f.type == "enum":
            return f"ENUM({', '.join(self.string_literal(v) for v in f.values)})"
        return self._types[f.type]

    def now_sql(self) -> str:
        return "CURRENT_TIMESTAMP(6)"

    def column_extras(self, model: Model, f: Field) -> list[str]:
        parts = super().column_extras(model, f)
        if f.auto_increment:
            parts.append("AUTO_INCREMENT")
        if f.comment is not None:
            parts.append(f"COMMENT {self.string_literal(f.comment)}")
        return parts

    def table_options(self, model: Model) -> str:
        options = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        if model.comment is not None:
            options += f" COMMENT={self.string_literal(model.comment)}"
        return options

    def drop_index(self, table: str, name: str) -> str:
        return f"DROP INDEX {self.quote(name)} ON {self.quote(table)}"

    def add_column(self, model: Model, f: Field) -> list[str]:
        statements = [
            f"ALTER TABLE {self.quote(model.name)} ADD COLUMN {self.column_sql(model, f)}"
        ]
        for name, expression in check_constraints(model, f, self):
            statements.extend(self.add_check(model.name, name, expression))
        if f.foreign_key is not None:
            statements.extend(self.add_foreign_key(model, f))
        return statements

    def drop_foreign_key(self, table: str, name: str) -> list[str]:
        return [f"ALTER TABLE {self.quote(table)} DROP FOREIGN KEY {self.quote(name)}"]

    def alter_column(
        self, model: Model, f: Field, *, type_: bool, nullable: bool, default: bool
    ) -> list[str]:
        # MODIFY restates the whole column, so one statement covers every aspect.
        return [f"ALTER TABLE {self.quote(model.name)} MODIFY COLUMN {self.column_sql(model, f)}"]


class SQLite(Dialect):
    name = "sqlite"
    json_check = True
    has_comments = False

    _types: ClassVar[dict[str, str]] = {
        "integer": "INTEGER",
        "big_integer": "BIGINT",
        "float": "REAL",
        "boolean": "BOOLEAN",
        "text": "TEXT",
        "bytes": "BLOB",
        "date": "DATE",
        "datetime": "DATETIME",
        "json": "TEXT",
        "uuid": "CHAR(36)",
        "enum": "TEXT",
    }

    def sql_type(self, model: Model, f: Field) -> str:
        if f.auto_increment:
            return "INTEGER"  # only INTEGER PRIMARY KEY is the rowid alias
        if f.type == "varchar":
            return f"VARCHAR({f.length})"
        if f.type == "decimal":
            return f"DECIMAL({f.precision}, {f.scale or 0})"
        return self._types[f.type]

    def stored_type(self, model: Model, f: Field) -> ColumnType:
        if f.auto_increment:
            return ColumnType("integer")
        return super().stored_type(model, f)

    def column_extras(self, model: Model, f: Field) -> list[str]:
        if f.auto_increment:
            return ["PRIMARY KEY AUTOINCREMENT"]
        return super().column_extras(model, f)

    def table_constraints(self, model: Model, deferred: Sequence[str]) -> list[str]:
        out = super().table_constraints(model, ())
        if any(f.auto_increment for f in model.fields):
            out = [c for c in out if " PRIMARY KEY (" not in c]
        return out

    def add_column(self, model: Model, f: Field) -> list[str]:
        column = self.column_sql(model, f)
        extras = [
            f"CONSTRAINT {self.quote(name)} CHECK ({expression})"
            for name, expression in check_constraints(model, f, self)
        ]
        if f.foreign_key is not None:
            extras.append(f"CONSTRAINT {self.quote(fk_name(model, f))} {self.foreign_key_sql(f)}")
        sql = f"ALTER TABLE {self.quote(model.name)} ADD COLUMN {column}"
        return [" ".join([sql, *extras])]

    def add_foreign_key(self, model: Model, f: Field) -> list[str]:
        raise NotImplementedError("SQLite cannot add a foreign key to an existing table")

    def alter_column(
        self, model: Model, f: Field, *, type_: bool, nullable: bool, default: bool
    ) -> list[str]:
        raise NotImplementedError("SQLite cannot alter a column in place")


_DIALECTS: dict[str, Dialect] = {d.name: d for d in (PostgreSQL(), MySQL(), SQLite())}


def get_dialect(name: str) -> Dialect:
    """
    The dialect called C{name} (C{postgresql}/C{postgres}/C{pg}, C{mysql}/C{mariadb},
    C{sqlite}).

    @raise ConfigurationError: for an unknown name.
    """
    canonical = DIALECT_ALIASES.get(name.strip().lower()) if isinstance(name, str) else None
    if canonical is None:
        raise ConfigurationError(
            f"unknown SQL dialect {name!r}; expected one of postgres, mysql, sqlite"
        )
    return _DIALECTS[canonical]


def creation_order(
    models: Sequence[Model], existing: Iterable[str] = ()
) -> list[tuple[Model, list[str]]]:
    """
    Order models so that referenced tables come first (declaration order otherwise), and
    say which foreign keys must be added after all tables exist (reference cycles).

    @param existing: tables that exist already and need no creating.
    @return: C{(model, deferred field names)} pairs.
    """
    created = set(existing)
    pending = list(models)
    names = {m.name for m in models}
    out: list[tuple[Model, list[str]]] = []
    while pending:
        for position, m in enumerate(pending):  # noqa: B007 - used after the loop
            needs = {
                f.foreign_key.table
                for f in m.fields
                if f.foreign_key is not None and f.foreign_key.table != m.name
            }
            if all(t in created or t not in names for t in needs):
                break
        else:
            position = 0
        m = pending.pop(position)
        deferred = [
            f.name
            for f in m.fields
            if f.foreign_key is not None
            and f.foreign_key.table != m.name
            and f.foreign_key.table not in created
        ]
        created.add(m.name)
        out.append((m, deferred))
    return out


def generate_statements(schema: Schema, dialect: str | Dialect) -> list[str]:
    """
    Every statement that creates the schema on an empty database, in a stable order.
    """
    d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect)
    statements: list[str] = []
    later: list[str] = []
    for model, deferred in creation_order(schema.models):
        if isinstance(d, SQLite):
            deferred = []  # SQLite resolves references lazily: always inline
        statements.extend(d.create_table(model, deferred))
        for name in deferred:
            f = model.field(name)
            assert f is not None
            later.extend(d.add_foreign_key(model, f))
    return statements + later


def generate_ddl(schema: Schema, dialect: str) -> str:
    """
    The DDL that creates C{schema} on an empty database of the given dialect: one
    statement per paragraph, each ending with C{;}. The output is deterministic (same
    schema, same text), so it can be committed and reviewed.

    @param dialect: C{postgres}, C{mysql} or C{sqlite} (and their aliases).
    @raise ModelValidationError: if the schema is invalid (see C{validate}).
    @raise ConfigurationError: for an unknown dialect.
    """
    from pywatt_twisted.data.models._validate import validate

    d = get_dialect(dialect)
    validate(schema)
    return "".join(f"{s};\n\n" for s in generate_statements(schema, d)).rstrip("\n") + "\n"


# --- reading back what a dialect wrote ------------------------------------------------------

_CAST = re.compile(r"::[a-z_ ]+(\(\d+(\s*,\s*\d+)?\))?(\[\])?$", re.IGNORECASE)
_NOW_SPELLINGS = re.compile(
    r"^(current_timestamp|now|localtimestamp|transaction_timestamp|statement_timestamp)"
    r"(\s*\(\s*\d*\s*\))?$",
    re.IGNORECASE,
)


def parse_default_sql(raw: str | None, dialect: Dialect) -> Any:
    """
    Turn a default expression as a database reports it (C{'new'::text}, C{0.00},
    C{current_timestamp(6)}, C{NULL}...) into a plain value: a string, a number spelled
    as text, L{NOW}, or C{None} for no default.
    """
    if raw is None:
        return None
    text = raw.strip()
    while True:
        stripped = _CAST.sub("", text).strip()
        if stripped.startswith("(") and stripped.endswith(")"):
            stripped = stripped[1:-1].strip()
        if stripped == text:
            break
        text = stripped
    if not text or text.upper() == "NULL":
        return None
    if _NOW_SPELLINGS.match(text):
        return NOW
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        body = text[1:-1]
        if isinstance(dialect, MySQL):
            body = re.sub(r"\\(.)", r"\1", body.replace("''", "'"))
            return body
        return body.replace("''", "'")
    return text


def canonical_default(f: Field, value: Any) -> str | None:
    """
    A comparable spelling of a default, whichever side it comes from (the model's value
    or L{parse_default_sql} of the database's), interpreted through the field's type.
    """
    if value is None or f.auto_increment:
        return None
    t = f.type
    try:
        if t == "boolean":
            if isinstance(value, bool):
                return "true" if value else "false"
            return (
                "true" if str(value).strip().lower() in ("1", "true", "t", "yes", "on") else "false"
            )
        if t in ("integer", "big_integer"):
            return str(int(decimal.Decimal(str(value))))
        if t == "float":
            return repr(float(value))
        if t == "decimal":
            return format(decimal.Decimal(str(value)).normalize(), "f")
    except (ValueError, decimal.InvalidOperation):
        return str(value)
    if t == "datetime":
        return NOW if str(value).strip().lower() in (NOW, "current_timestamp") else str(value)
    if t == "date" and isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)
