# -*- test-case-name: tests.data.models.test_diff -*-
"""
The schema diff: what a live database (as introspected) lacks or has too much compared
with the models, as a L{MigrationPlan} of L{Change}s, each with its statements.

What is compared: tables; columns (type, nullability, default, comment); primary keys;
indexes (by columns and uniqueness, whatever their names); foreign keys (by columns,
target and actions); check constraints (by name). Tables, indexes and constraints the
models do not mention are left alone, except those named the way the generator names
them (C{ix_}, C{ux_}, C{uq_}, C{fk_}, C{ck_}): those the model manager made, so it drops
them when the models no longer ask for them.

Destructive changes (dropping a column, narrowing a type) are part of the plan but marked
so; C{sync} applies them only when allowed. Changes the dialect cannot make in place
(SQLite cannot alter a column or add a foreign key to an existing table; no dialect's
primary key is changed automatically) are I{unsupported}: listed, never applied.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import field as attrs_field
from attrs import frozen

from pywatt_twisted.data.models._ddl import (
    ColumnType,
    Dialect,
    SQLite,
    all_indexes,
    canonical_default,
    check_constraints,
    constraint_name,
    creation_order,
    fk_name,
    get_dialect,
    parse_default_sql,
)
from pywatt_twisted.data.models._introspect import (
    INDEX_PREFIXES,
    ColumnInfo,
    DatabaseSchema,
    TableInfo,
)
from pywatt_twisted.data.models._model import Field, Model, Schema

#: Order in which kinds of change are applied.
PHASES = (
    "drop_foreign_key",
    "drop_check",
    "drop_index",
    "create_table",
    "add_column",
    "alter_column",
    "drop_column",
    "create_index",
    "add_check",
    "add_foreign_key",
    "comment",
)


@frozen
class Change:
    """
    One step of a migration.

    @ivar kind: one of L{PHASES}.
    @ivar table: the table it concerns.
    @ivar target: the column, index or constraint, if any.
    @ivar description: a one-line description for people.
    @ivar statements: the SQL that makes it (empty when unsupported).
    @ivar destructive: whether it can lose data.
    @ivar reason: why it is destructive or unsupported.
    """

    kind: str
    table: str
    target: str | None
    description: str
    statements: tuple[str, ...] = ()
    destructive: bool = False
    reason: str | None = None

    def __str__(self) -> str:
        text = self.description
        if self.reason:
            text += f" ({self.reason})"
        return text


@frozen
class MigrationPlan:
    """
    What it takes to bring a database in step with the models.

    @ivar changes: the changes that can be applied, in the order they will be.
    @ivar unsupported: changes that need a manual migration; never applied.
    """

    dialect: str
    changes: tuple[Change, ...] = ()
    unsupported: tuple[Change, ...] = attrs_field(default=())

    @property
    def is_empty(self) -> bool:
        """
        Whether the database already matches the models.
        """
        return not self.changes and not self.unsupported

    @property
    def destructive(self) -> list[Change]:
        """
        The changes that can lose data.
        """
        return [c for c in self.changes if c.destructive]

    @property
    def statements(self) -> list[str]:
        """
        Every statement of the plan, destructive ones included, in order.
        """
        return [s for c in self.changes for s in c.statements]

    def __str__(self) -> str:
        if self.is_empty:
            return "no changes: the database matches the models"
        lines = []
        for c in self.changes:
            mark = "!" if c.destructive else "+"
            lines.append(f"{mark} {c}")
        for c in self.unsupported:
            lines.append(f"? {c}")
        summary = [f"{len(self.changes)} change{'s' if len(self.changes) != 1 else ''}"]
        if self.destructive:
            summary.append(f"{len(self.destructive)} destructive (marked !)")
        if self.unsupported:
            summary.append(
                f"{len(self.unsupported)} unsupported (marked ?), needing a manual migration"
            )
        return "\n".join(lines) + "\n" + ", ".join(summary)


def is_widening(old: ColumnType, new: ColumnType) -> bool:
    """
    Whether changing a column from C{old} to C{new} keeps every value as it is.
    """
    if old == new:
        return True
    if old.kind == "integer" and new.kind == "big_integer":
        return True
    if old.kind == "varchar" and new.kind == "varchar":
        return (new.length or 0) >= (old.length or 0)
    if old.kind in ("varchar", "enum", "uuid") and new.kind == "text":
        return True
    if old.kind == "enum" and new.kind == "varchar":
        return all(len(v) <= (new.length or 0) for v in old.values)
    if old.kind == "enum" and new.kind == "enum":
        return set(old.values) <= set(new.values)
    if old.kind == "decimal" and new.kind == "decimal":
        old_int = (old.precision or 0) - (old.scale or 0)
        new_int = (new.precision or 0) - (new.scale or 0)
        return (new.scale or 0) >= (old.scale or 0) and new_int >= old_int
    return False


class _Differ:
    def __init__(self, schema: Schema, current: DatabaseSchema, dialect: Dialect) -> None:
        self.schema = schema
        self.current = current
        self.d = dialect
        self.changes: list[Change] = []
        self.unsupported: list[Change] = []

    def add(self, change: Change) -> None:
        self.changes.append(change)

    def unsupported_change(
        self, kind: str, table: str, target: str | None, description: str, reason: str
    ) -> None:
        self.unsupported.append(Change(kind, table, target, description, (), False, reason))

    def run(self) -> MigrationPlan:
        missing = [m for m in self.schema.models if m.name not in self.current.tables]
        existing = [m for m in self.schema.models if m.name in self.current.tables]
        later: list[Change] = []
        for m, deferred in creation_order(missing, existing=self.current.tables):
            if isinstance(self.d, SQLite):
                deferred = []
            self.add(
                Change(
                    "create_table",
                    m.name,
                    None,
                    f"create table {m.name}",
                    tuple(self.d.create_table(m, deferred)),
                )
            )
            for name in deferred:
                f = m.field(name)
                assert f is not None
                later.append(
                    Change(
                        "add_foreign_key",
                        m.name,
                        fk_name(m, f),
                        f"add foreign key {m.name}.{name} -> {f.foreign_key.table}",  # type: ignore[union-attr]
                        tuple(self.d.add_foreign_key(m, f)),
                    )
                )
        for m in existing:
            self.table(m, self.current.tables[m.name])
        self.changes.extend(later)
        order = {kind: i for i, kind in enumerate(PHASES)}
        changes = sorted(self.changes, key=lambda c: order[c.kind])  # stable within a phase
        return MigrationPlan(self.d.name, tuple(changes), tuple(self.unsupported))

    # --- one existing table

    def table(self, m: Model, t: TableInfo) -> None:
        if tuple(m.primary_key_columns) != tuple(t.primary_key):
            self.unsupported_change(
                "alter_column",
                m.name,
                None,
                f"change the primary key of {m.name} from ({', '.join(t.primary_key)}) to "
                f"({', '.join(m.primary_key_columns)})",
                "primary keys are never changed automatically; migrate by hand",
            )
        for f in m.fields:
            info = t.column(f.name)
            if info is None:
                self.add_column(m, f)
            else:
                self.column(m, f, info)
        names = {f.name for f in m.fields}
        for info in t.columns:
            if info.name not in names:
                self.add(
                    Change(
                        "drop_column",
                        m.name,
                        info.name,
                        f"drop column {m.name}.{info.name}",
                        tuple(self.d.drop_column(m.name, info.name)),
                        destructive=True,
                        reason="loses the column's data",
                    )
                )
        self.indexes(m, t)
        self.foreign_keys(m, t)
        self.checks(m, t)
        if (
            self.d.has_comments
            and (m.comment or None) != (t.comment or None)
            and m.comment is not None
        ):
            self.add(
                Change(
                    "comment",
                    m.name,
                    None,
                    f"set the comment of table {m.name}",
                    tuple(self.table_comment(m)),
                )
            )

    def table_comment(self, m: Model) -> list[str]:
        text = self.d.string_literal(m.comment or "")
        if self.d.name == "mysql":
            return [f"ALTER TABLE {self.d.quote(m.name)} COMMENT={text}"]
        return [f"COMMENT ON TABLE {self.d.quote(m.name)} IS {text}"]

    def add_column(self, m: Model, f: Field) -> None:
        where = f"{m.name}.{f.name}"
        if f.name in m.primary_key_columns or f.auto_increment:
            self.unsupported_change(
                "add_column",
                m.name,
                f.name,
                f"add key column {where}",
                "adding a primary key column needs a manual migration",
            )
            return
        if isinstance(self.d, SQLite):
            if not f.nullable and f.default is None:
                self.unsupported_change(
                    "add_column",
                    m.name,
                    f.name,
                    f"add column {where}",
                    "SQLite cannot add a NOT NULL column without a default; give it a default",
                )
                return
            if f.type == "datetime" and f.default is not None:
                self.unsupported_change(
                    "add_column",
                    m.name,
                    f.name,
                    f"add column {where}",
                    "SQLite cannot add a column whose default is the current time",
                )
                return
        self.add(
            Change(
                "add_column",
                m.name,
                f.name,
                f"add column {where} {self.d.sql_type(m, f)}",
                tuple(self.d.add_column(m, f)),
            )
        )

    def column(self, m: Model, f: Field, info: ColumnInfo) -> None:
        where = f"{m.name}.{f.name}"
        want = self.d.stored_type(m, f)
        type_changed = want != info.type
        nullable_changed = f.nullable != info.nullable and f.name not in m.primary_key_columns
        default_changed = canonical_default(f, f.default) != canonical_default(
            f, parse_default_sql(info.default, self.d)
        )
        if f.auto_increment or info.auto_increment:
            default_changed = False
        comment_changed = (
            self.d.has_comments
            and f.comment is not None
            and (f.comment or None) != (info.comment or None)
        )
        if not (type_changed or nullable_changed or default_changed or comment_changed):
            return
        what = []
        if type_changed:
            what.append(f"type {info.type} -> {want}")
        if nullable_changed:
            what.append("allow NULL" if f.nullable else "forbid NULL")
        if default_changed:
            what.append(f"default {info.default or 'none'} -> {self.d.default_sql(f) or 'none'}")
        if comment_changed:
            what.append("comment")
        description = f"alter column {where}: {', '.join(what)}"
        if isinstance(self.d, SQLite):
            self.unsupported_change(
                "alter_column",
                m.name,
                f.name,
                description,
                "SQLite cannot alter a column in place; rebuild the table by hand",
            )
            return
        destructive = type_changed and not is_widening(info.type, want)
        enum_check = f.type == "enum" and not self.d.native_enum
        statements = []
        if type_changed or nullable_changed or default_changed:
            if enum_check and type_changed and info.type.kind == "enum":
                # the enum lives in a CHECK constraint: swap it, the column stays text
                name = constraint_name("ck", m.name, f.name, "enum")
                checks = dict(check_constraints(m, f, self.d))
                statements += self.d.drop_check(m.name, name) + self.d.add_check(
                    m.name, name, checks[name]
                )
                type_only = info.type.kind == "enum" and want.kind == "enum"
                if not type_only or nullable_changed or default_changed:
                    statements += self.d.alter_column(
                        m,
                        f,
                        type_=not type_only,
                        nullable=nullable_changed,
                        default=default_changed,
                    )
            else:
                statements += self.d.alter_column(
                    m, f, type_=type_changed, nullable=nullable_changed, default=default_changed
                )
        if comment_changed:
            if self.d.name == "mysql":
                if not statements:
                    statements += self.d.alter_column(
                        m, f, type_=False, nullable=False, default=False
                    )
            else:
                statements += self.d.column_comment_statements(m, f)
        self.add(
            Change(
                "alter_column",
                m.name,
                f.name,
                description,
                tuple(statements),
                destructive=destructive,
                reason="narrows the type; values may be cut or rejected" if destructive else None,
            )
        )

    def indexes(self, m: Model, t: TableInfo) -> None:
        have = list(t.indexes)
        matched: set[str] = set()
        dropped_columns = {c.name for c in t.columns} - {f.name for f in m.fields}
        for name, index in all_indexes(m):
            found = next(
                (
                    i
                    for i in have
                    if i.columns == index.columns
                    and i.unique == index.unique
                    and i.name not in matched
                ),
                None,
            )
            if found is not None:
                matched.add(found.name)
                continue
            kind = "unique index" if index.unique else "index"
            self.add(
                Change(
                    "create_index",
                    m.name,
                    name,
                    f"create {kind} {name} on {m.name} ({', '.join(index.columns)})",
                    (self.d.create_index(m.name, name, index),),
                )
            )
        for i in have:
            if i.name in matched or not i.name.startswith(INDEX_PREFIXES):
                continue  # not made by the model manager (MySQL names foreign key indexes fk_)
            if self.d.name == "postgresql" and set(i.columns) & dropped_columns:
                continue  # dropping the column drops the index
            self.add(
                Change(
                    "drop_index",
                    m.name,
                    i.name,
                    f"drop index {i.name} on {m.name}",
                    (self.d.drop_index(m.name, i.name),),
                )
            )

    def foreign_keys(self, m: Model, t: TableInfo) -> None:
        aliases = self.d.action_aliases

        def norm(action: str) -> str:
            return aliases.get(action, action)

        have = list(t.foreign_keys)
        matched: set[int] = set()
        for f in m.fields:
            fk = f.foreign_key
            if fk is None:
                continue
            want = ((f.name,), fk.table, (fk.column,), norm(fk.on_delete), norm(fk.on_update))
            found = next(
                (
                    n
                    for n, h in enumerate(have)
                    if n not in matched
                    and (h.columns, h.table, h.ref_columns, norm(h.on_delete), norm(h.on_update))
                    == want
                ),
                None,
            )
            if found is not None:
                matched.add(found)
                continue
            if t.column(f.name) is None and isinstance(self.d, SQLite):
                continue  # added inline with the column
            if t.column(f.name) is None:
                continue  # add_column adds it
            description = f"add foreign key {m.name}.{f.name} -> {fk.table}.{fk.column}"
            if isinstance(self.d, SQLite):
                self.unsupported_change(
                    "add_foreign_key",
                    m.name,
                    f.name,
                    description,
                    "SQLite cannot add a foreign key to an existing table",
                )
                continue
            self.add(
                Change(
                    "add_foreign_key",
                    m.name,
                    fk_name(m, f),
                    description,
                    tuple(self.d.add_foreign_key(m, f)),
                )
            )
        dropped_columns = {c.name for c in t.columns} - {f.name for f in m.fields}
        for n, h in enumerate(have):
            if n in matched:
                continue
            label = f"{h.name} " if h.name else ""
            columns = ", ".join(h.columns)
            description = f"drop foreign key {label}{m.name}({columns}) -> {h.table}"
            if isinstance(self.d, SQLite):
                if set(h.columns) & dropped_columns:
                    continue  # reported with the column
                self.unsupported_change(
                    "drop_foreign_key",
                    m.name,
                    h.name,
                    description,
                    "SQLite cannot drop a foreign key; rebuild the table by hand",
                )
                continue
            if h.name and h.name.startswith("fk_"):
                self.add(
                    Change(
                        "drop_foreign_key",
                        m.name,
                        h.name,
                        description,
                        tuple(self.d.drop_foreign_key(m.name, h.name)),
                    )
                )

    def checks(self, m: Model, t: TableInfo) -> None:
        want: dict[str, str] = {}
        for f in m.fields:
            want.update(check_constraints(m, f, self.d))
        for c in m.checks:
            want[constraint_name("ck", m.name, c.name)] = c.expression
        have = set(t.checks)
        new_columns = {f.name for f in m.fields if t.column(f.name) is None}
        for name, expression in want.items():
            if name in have:
                continue
            if any(
                name in dict(check_constraints(m, f, self.d))
                for f in m.fields
                if f.name in new_columns
            ):
                continue  # comes with the new column
            if self._enum_swap(m, name):
                continue
            description = f"add check {name} on {m.name}"
            if isinstance(self.d, SQLite):
                self.unsupported_change(
                    "add_check",
                    m.name,
                    name,
                    description,
                    "SQLite cannot add a check to an existing table",
                )
                continue
            self.add(
                Change(
                    "add_check",
                    m.name,
                    name,
                    description,
                    tuple(self.d.add_check(m.name, name, expression)),
                )
            )
        dropped_columns = {c.name for c in t.columns} - {f.name for f in m.fields}
        for name in sorted(have - set(want)):
            if not name.startswith("ck_"):
                continue
            if any(name.startswith(constraint_name("ck", m.name, col)) for col in dropped_columns):
                continue  # goes with its column
            description = f"drop check {name} on {m.name}"
            if isinstance(self.d, SQLite):
                self.unsupported_change(
                    "drop_check",
                    m.name,
                    name,
                    description,
                    "SQLite cannot drop a check; rebuild the table by hand",
                )
                continue
            self.add(
                Change(
                    "drop_check", m.name, name, description, tuple(self.d.drop_check(m.name, name))
                )
            )

    def _enum_swap(self, m: Model, name: str) -> bool:
        return any(
            c.kind == "alter_column"
            and c.table == m.name
            and name == constraint_name("ck", m.name, c.target or "", "enum")
            for c in self.changes
        )


def diff(
    schema: Schema, current: DatabaseSchema, dialect: str | Dialect | None = None
) -> MigrationPlan:
    """
    Compare models with an introspected database.

    @param dialect: defaults to the introspected database's.
    """
    d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect or current.dialect)
    return _Differ(schema, current, d).run()


def describe(changes: Iterable[Change]) -> str:
    return "\n".join(f"  - {c}" for c in changes)
