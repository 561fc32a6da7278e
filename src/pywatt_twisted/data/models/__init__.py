"""
The model manager: declare tables once (attrs classes, dicts or a C{models.yaml}), generate
their DDL for PostgreSQL, MySQL/MariaDB and SQLite, and keep a live database in step.

See C{docs/models.md}.
"""

from pywatt_twisted.data.models._ddl import generate_ddl
from pywatt_twisted.data.models._diff import Change, MigrationPlan
from pywatt_twisted.data.models._model import (
    Check,
    Field,
    ForeignKey,
    Index,
    Model,
    ModelValidationError,
    Problem,
    Schema,
    column,
    load_models,
    model,
)
from pywatt_twisted.data.models._sync import (
    DestructiveChangeError,
    MigrationError,
    SyncReport,
    introspect,
    plan,
    sync,
)
from pywatt_twisted.data.models._validate import validate

__all__ = [
    "Change",
    "Check",
    "DestructiveChangeError",
    "Field",
    "ForeignKey",
    "Index",
    "MigrationError",
    "MigrationPlan",
    "Model",
    "ModelValidationError",
    "Problem",
    "Schema",
    "SyncReport",
    "column",
    "generate_ddl",
    "introspect",
    "load_models",
    "model",
    "plan",
    "sync",
    "validate",
]
