# -*- test-case-name: tests.data.models.test_generate -*-
"""
Drop the tables of a set of models, and only those: L{drop_plan} says what would go,
L{drop} does it (C{pywatt db model drop --yes}).

Tables are dropped dependents first (a table that references another goes before it);
a foreign key that would still point at a dropped table (a reference cycle) is dropped
just before. A table outside the models that references one of them stops everything
before anything is dropped: dropping would need C{CASCADE}, which changes a table the
models do not own.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred

from pywatt_twisted.data.models._ddl import creation_order, get_dialect
from pywatt_twisted.data.models._introspect import DatabaseSchema, introspect_transaction
from pywatt_twisted.data.models._model import Schema, load_models
from pywatt_twisted.data.models._sync import MigrationError


@frozen
class DropPlan:
    """
    What dropping the models' tables does.

    @ivar tables: the tables to drop, in the order they are dropped.
    @ivar missing: the models' tables the database does not have (nothing to do).
    @ivar foreign_keys: C{(table, constraint)} foreign keys dropped first, because a table
        dropped earlier is referenced by a table dropped later (a cycle).
    @ivar blockers: C{"table(columns) -> target"} references from tables outside the
        models; when there are any, nothing is dropped.
    @ivar statements: the SQL, in order.
    """

    dialect: str
    tables: tuple[str, ...]
    missing: tuple[str, ...]
    foreign_keys: tuple[tuple[str, str], ...]
    blockers: tuple[str, ...]
    statements: tuple[str, ...]

    def __str__(self) -> str:
        lines = [f"- drop foreign key {c} on {t} (a reference cycle)" for t, c in self.foreign_keys]
        lines += [f"- drop table {t}" for t in self.tables]
        if self.missing:
            lines.append(f"not in the database (nothing to drop): {', '.join(self.missing)}")
        if not self.tables:
            lines.insert(0, "no tables to drop")
        return "\n".join(lines)


def drop_plan(schema: Schema, current: DatabaseSchema) -> DropPlan:
    """
    Plan dropping the tables of C{schema} from the introspected database.
    """
    d = get_dialect(current.dialect)
    ours = {m.name for m in schema.models}
    order = [m.name for m, _ in reversed(creation_order(schema.models)) if m.name in current.tables]
    missing = tuple(sorted(ours - set(current.tables)))
    blockers = tuple(
        sorted(
            f"{t.name}({', '.join(fk.columns)}) -> {fk.table}"
            for t in current.tables.values()
            if t.name not in ours
            for fk in t.foreign_keys
            if fk.table in ours
        )
    )
    statements: list[str] = []
    cut: list[tuple[str, str]] = []
    for position, table in enumerate(order):
        later = order[position + 1 :]
        for other in later:
            for fk in current.tables[other].foreign_keys:
                if fk.table != table:
                    continue
                if current.dialect == "sqlite" or fk.name is None:
                    continue  # SQLite: deferred foreign keys, checked at commit
                cut.append((other, fk.name))
                statements.extend(d.drop_foreign_key(other, fk.name))
        statements.append(f"DROP TABLE {d.quote(table)}")
    return DropPlan(current.dialect, tuple(order), missing, tuple(cut), blockers, tuple(statements))


def _refuse_blocked(plan: DropPlan) -> None:
    if plan.blockers:
        raise MigrationError(
            "tables outside the models reference tables that would be dropped:\n"
            + "\n".join(f"  - {b}" for b in plan.blockers)
            + "\nDrop those foreign keys (or add their tables to the models) first. "
            "Nothing was dropped."
        )


def _drop_in_transaction(tx: Any, schema: Schema, dialect: str, execute: bool) -> DropPlan:
    plan = drop_plan(schema, introspect_transaction(tx, dialect))
    if not execute:
        return plan
    _refuse_blocked(plan)
    if dialect == "sqlite":
        # the implicit DELETE of DROP TABLE checks references at commit, when all are gone
        tx.execute("PRAGMA defer_foreign_keys = ON")
    done: list[str] = []
    for statement in plan.statements:
        try:
            tx.execute(statement)
        except Exception as e:
            if get_dialect(dialect).transactional_ddl:
                raise
            raise MigrationError(
                f"a drop statement failed on {dialect}: {e}\nstatement: {statement}\n"
                f"{len(done)} statement(s) had run before it and stay applied "
                "(MySQL/MariaDB DDL is not transactional); fix the cause and drop again."
            ) from e
        done.append(statement)
    return plan


def drop(db: Any, schema: Any, *, execute: bool = False) -> Deferred[DropPlan]:
    """
    Drop the tables of the models (only those) from a live database.

    @param db: a L{pywatt_twisted.data.Database}.
    @param schema: a L{Schema}, or anything L{load_models} accepts.
    @param execute: C{False} (the default) only plans: nothing is dropped.
    @return: a Deferred firing with the L{DropPlan} (carried out when C{execute}); failing
        with L{MigrationError} when a table outside the models references one of them
        (nothing dropped), or a database error.
    """

    async def run() -> DropPlan:
        loaded = load_models(schema)
        result: DropPlan = await db.run_interaction(
            _drop_in_transaction, loaded, db.dialect, execute
        )
        return result

    return Deferred.fromCoroutine(run())
