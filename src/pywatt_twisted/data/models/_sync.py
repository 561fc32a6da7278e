# -*- test-case-name: tests.data.models.test_live -*-
"""
Keep a live database in step with the models: L{introspect}, L{plan} and L{sync}.

C{sync} does its whole job (lock, introspect, diff, apply) in one database transaction:

    - PostgreSQL: DDL is transactional, so a migration applies completely or not at all;
      a transaction-scoped advisory lock keeps two instances starting at once from
      migrating together.
    - SQLite: DDL is transactional too.
    - MySQL/MariaDB: every DDL statement commits on its own; the migration runs statement
      by statement, and on a failure the error says which statements were already
      applied. A named lock (C{GET_LOCK}) serialises concurrent migrations.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred

from pywatt_twisted.data.models._ddl import get_dialect
from pywatt_twisted.data.models._diff import Change, MigrationPlan, describe, diff
from pywatt_twisted.data.models._introspect import DatabaseSchema, introspect_transaction
from pywatt_twisted.data.models._model import Schema, load_models
from pywatt_twisted.data.models._validate import validate
from pywatt_twisted.errors import DataError

#: Name of the lock that serialises migrations (PostgreSQL advisory key, MySQL lock name).
LOCK_NAME = "pywatt_schema_sync"
_PG_LOCK_KEY = 0x7079_7761_7474  # "pywatt"


class MigrationError(DataError):
    """
    The database could not be brought in step with the models: a change needs a manual
    migration, or a statement failed.

    @ivar changes: the changes concerned.
    @ivar applied: statements that were applied before a failure (MySQL only; on
        PostgreSQL and SQLite a failure rolls everything back).
    """

    def __init__(
        self, message: str, changes: list[Change] | None = None, applied: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.changes = list(changes or ())
        self.applied = list(applied or ())


class DestructiveChangeError(MigrationError):
    """
    Bringing the database in step needs changes that can lose data, and they were not
    allowed. Nothing was applied.
    """


@frozen
class SyncReport:
    """
    What L{sync} did.

    @ivar plan: the plan it found (empty if the database already matched).
    @ivar applied: the statements it ran, in order.
    @ivar transactional: whether they ran in one transaction (all-or-nothing).
    """

    dialect: str
    plan: MigrationPlan
    applied: tuple[str, ...]
    transactional: bool

    @property
    def changed(self) -> bool:
        return bool(self.applied)

    def __str__(self) -> str:
        if not self.changed:
            return "no changes: the database matches the models"
        n = len(self.plan.changes)
        return (
            f"applied {n} change{'s' if n != 1 else ''} ({len(self.applied)} statements):\n"
            + describe(self.plan.changes)
        )


def _refuse(plan: MigrationPlan, allow_destructive: bool) -> None:
    if plan.unsupported:
        raise MigrationError(
            f"the database needs {len(plan.unsupported)} change(s) that cannot be made "
            f"automatically on {plan.dialect}:\n{describe(plan.unsupported)}\n"
            "Migrate these by hand (or adjust the models), then start again. Nothing was applied.",
            list(plan.unsupported),
        )
    if plan.destructive and not allow_destructive:
        raise DestructiveChangeError(
            f"the database needs {len(plan.destructive)} destructive change(s) to match the "
            f"models, and destructive changes are not allowed:\n{describe(plan.destructive)}\n"
            "Nothing was applied. Review the plan with 'pywatt db schema diff', back up the "
            "data, then apply with --allow-destructive (sync(..., allow_destructive=True)), "
            "or change the models instead.",
            plan.destructive,
        )


def _lock(tx: Any, dialect: str) -> None:
    if dialect == "postgresql":
        tx.query(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
    elif dialect == "mysql":
        row = tx.query_one(f"SELECT GET_LOCK('{LOCK_NAME}', 60) AS got")
        if not row or not row.get("got"):
            raise MigrationError(
                f"waited 60 s for the schema lock {LOCK_NAME!r} held by another migration; "
                "try again when it has finished"
            )


def _unlock(tx: Any, dialect: str) -> None:
    if dialect == "mysql":
        tx.query(f"SELECT RELEASE_LOCK('{LOCK_NAME}') AS released")


def _plan_in_transaction(tx: Any, schema: Schema, dialect: str) -> MigrationPlan:
    current = introspect_transaction(tx, dialect)
    return diff(schema, current, dialect)


def _sync_in_transaction(
    tx: Any, schema: Schema, dialect: str, allow_destructive: bool
) -> SyncReport:
    d = get_dialect(dialect)
    _lock(tx, dialect)
    applied: list[str] = []
    try:
        plan = _plan_in_transaction(tx, schema, dialect)
        _refuse(plan, allow_destructive)
        for statement in plan.statements:
            try:
                tx.execute(statement)
            except Exception as e:
                if d.transactional_ddl:
                    raise
                raise MigrationError(
                    f"a migration statement failed on {dialect}: {e}\n"
                    f"statement: {statement}\n"
                    f"{len(applied)} statement(s) had been applied before it and stay applied "
                    "(MySQL/MariaDB DDL is not transactional); fix the cause and run the sync "
                    "again: it continues from where the database is now.",
                    list(plan.changes),
                    applied,
                ) from e
            applied.append(statement)
    finally:
        if dialect == "mysql":
            _unlock(tx, dialect)
    return SyncReport(dialect, plan, tuple(applied), d.transactional_ddl)


def introspect(db: Any) -> Deferred[DatabaseSchema]:
    """
    Read the schema of a live database.

    @param db: a L{pywatt_twisted.data.Database}.
    @return: a Deferred firing with a L{DatabaseSchema}.
    """
    result: Deferred[DatabaseSchema] = db.run_interaction(introspect_transaction, db.dialect)
    return result


def plan(db: Any, schema: Any) -> Deferred[MigrationPlan]:
    """
    Compare the models with a live database and say what would change; nothing is
    applied.

    @param db: a L{pywatt_twisted.data.Database}.
    @param schema: a L{Schema}, or anything L{load_models} accepts.
    @return: a Deferred firing with a L{MigrationPlan}, or failing with
        L{ModelValidationError} for invalid models or a database error.
    """

    async def run() -> MigrationPlan:
        loaded = load_models(schema)
        validate(loaded)
        result: MigrationPlan = await db.run_interaction(_plan_in_transaction, loaded, db.dialect)
        return result

    return Deferred.fromCoroutine(run())


def sync(db: Any, schema: Any, *, allow_destructive: bool = False) -> Deferred[SyncReport]:
    """
    Bring a live database in step with the models: create missing tables, add missing
    columns, indexes, foreign keys and checks, apply safe alterations (widening a type,
    changing a default...). Changes that can lose data are applied only with
    C{allow_destructive=True}; otherwise nothing at all is applied and the Deferred fails
    with L{DestructiveChangeError} naming them.

    @param db: a L{pywatt_twisted.data.Database}.
    @param schema: a L{Schema}, or anything L{load_models} accepts.
    @return: a Deferred firing with a L{SyncReport}; failing with
        L{ModelValidationError} (invalid models), L{DestructiveChangeError},
        L{MigrationError} (unsupported change, failed statement) or a database error.
    """

    async def run() -> SyncReport:
        loaded = load_models(schema)
        validate(loaded)
        report: SyncReport = await db.run_interaction(
            _sync_in_transaction, loaded, db.dialect, allow_destructive
        )
        return report

    return Deferred.fromCoroutine(run())
