# -*- test-case-name: tests.data.models.test_validate -*-
"""
Semantic validation of a L{Schema}: every problem is collected (not just the first) and
names its model and field, so one run of C{pywatt db model validate} shows them all.
"""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pywatt_twisted.data.models._model import (
    FIELD_TYPES,
    NOW,
    REFERENTIAL_ACTIONS,
    Field,
    Model,
    ModelValidationError,
    Problem,
    Schema,
)

#: Identifiers must be plain ASCII words: letters, digits and underscores.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Longest identifier every dialect keeps intact (PostgreSQL truncates at 63 bytes).
MAX_IDENTIFIER = 63

#: Longest varchar MySQL/MariaDB can hold in utf8mb4.
MAX_VARCHAR = 16383

#: Largest decimal precision and scale MySQL/MariaDB support (PostgreSQL allows more).
MAX_PRECISION = 65
MAX_SCALE = 30

#: Types that cannot be indexed portably (MySQL needs a prefix length for them).
UNINDEXABLE = frozenset({"text", "bytes", "json"})

#: Words reserved in at least one of PostgreSQL, MySQL/MariaDB and SQLite. Generated DDL
#: always quotes identifiers, so these work, but hand-written SQL must quote them too.
RESERVED_WORDS = frozenset(
    """
    add all alter analyse analyze and any array as asc asymmetric authorization before
    between bigint binary both by call cascade case cast change check collate column
    condition constraint continue convert create cross current_catalog current_date
    current_role current_schema current_time current_timestamp current_user cursor database
    databases declare default deferrable delayed delete desc describe distinct div do double
    drop dual each else elseif end except exists exit explain false fetch float for force
    foreign freeze from full fulltext generated glob grant group having if ignore ilike in
    index inner inout insert int integer intersect interval into is isnull join key keys kill
    lateral leading leave left like limit linear lines load localtime localtimestamp lock
    long loop match mod modifies natural not notnull null numeric offset on only option or
    order out outer over overlaps partition placing precision primary procedure range rank
    read real references regexp release rename repeat replace require restrict return
    returning revoke right rlike row rows schema select session_user set show similar
    smallint some spatial sql ssl starting symmetric table tablesample then to trailing
    trigger true union unique unlock unsigned update usage use user using values varchar
    variadic varying verbose when where while window with write xor year_month zerofill
    """.split()
)


def _problem(problems: list[Problem], model: str | None, field: str | None, message: str) -> None:
    problems.append(Problem(model, field, message))


def _check_identifier(
    kind: str,
    name: str,
    model: str | None,
    field: str | None,
    errors: list[Problem],
    warnings: list[Problem],
) -> None:
    if not IDENTIFIER.match(name):
        _problem(
            errors,
            model,
            field,
            f"{kind} name {name!r} is not a plain identifier: use letters, digits and "
            "underscores, not starting with a digit",
        )
        return
    if len(name) > MAX_IDENTIFIER:
        _problem(
            errors,
            model,
            field,
            f"{kind} name {name!r} is {len(name)} characters long; the limit is "
            f"{MAX_IDENTIFIER} (PostgreSQL truncates longer names)",
        )
    if name.lower() in RESERVED_WORDS:
        _problem(
            warnings,
            model,
            field,
            f"{kind} name {name!r} is a reserved SQL word: the generated DDL quotes it, but "
            "every hand-written query must quote it too; consider another name",
        )
    if name != name.lower():
        _problem(
            warnings,
            model,
            field,
            f"{kind} name {name!r} has upper-case letters: it must then be quoted in every "
            "query on PostgreSQL; consider lower case",
        )


def _check_default(model: Model, f: Field, errors: list[Problem]) -> None:
    value = f.default
    if value is None:
        return

    def bad(expected: str) -> None:
        _problem(errors, model.name, f.name, f"default {value!r} is not {expected}")

    if f.auto_increment:
        _problem(errors, model.name, f.name, "an auto_increment field cannot have a default")
        return
    t = f.type
    if t in ("integer", "big_integer"):
        if isinstance(value, bool) or not isinstance(value, int):
            bad("an integer")
    elif t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad("a number")
    elif t == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, float, str, decimal.Decimal)):
            bad("a decimal number")
            return
        try:
            d = decimal.Decimal(str(value))
        except decimal.InvalidOperation:
            bad("a decimal number")
            return
        if not d.is_finite():
            bad("a finite decimal number")
        elif f.precision is not None:
            scale = f.scale or 0
            _, digits, exponent = d.as_tuple()
            assert isinstance(exponent, int)
            integer_digits = len(digits) + exponent if len(digits) + exponent > 0 else 0
            if integer_digits > f.precision - scale or -exponent > scale:
                bad(f"representable as decimal({f.precision}, {scale})")
    elif t == "boolean":
        if not isinstance(value, bool):
            bad("true or false")
    elif t in ("text", "varchar"):
        if not isinstance(value, str):
            bad("a string")
        elif t == "varchar" and f.length is not None and len(value) > f.length:
            bad(f"at most {f.length} characters long")
    elif t == "enum":
        if value not in f.values:
            bad(f"one of the enum values {list(f.values)}")
    elif t == "uuid":
        try:
            uuid.UUID(str(value))
        except ValueError:
            bad("a UUID")
    elif t == "date":
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            return
        try:
            datetime.date.fromisoformat(str(value))
        except ValueError:
            bad("a date in ISO format (YYYY-MM-DD)")
    elif t == "datetime":
        if not (isinstance(value, str) and value.strip().lower() in (NOW, "current_timestamp")):
            bad(
                f"{NOW!r}: a datetime default can only be the current time (fixed instants "
                "are rendered differently by each database and time zone)"
            )
    elif t in ("json", "bytes"):
        _problem(
            errors,
            model.name,
            f.name,
            f"a {t} field cannot have a default (not portable); set the value on insert",
        )


def _check_field(model: Model, f: Field, errors: list[Problem], warnings: list[Problem]) -> None:
    name = model.name
    _check_identifier("column", f.name, name, f.name, errors, warnings)
    if f.type not in FIELD_TYPES:
        _problem(
            errors,
            name,
            f.name,
            f"unknown type {f.type!r}; expected one of {', '.join(FIELD_TYPES)}",
        )
        return
    _check_type_options(name, f, errors)
    _check_key_options(model, f, errors, warnings)
    _check_default(model, f, errors)


def _check_type_options(name: str, f: Field, errors: list[Problem]) -> None:
    """
    C{length}, C{precision}/C{scale} and C{values}: each required by its type
    (varchar, decimal, enum), in range, and given to no other type.
    """
    if f.type == "varchar":
        if f.length is None:
            _problem(errors, name, f.name, "a varchar needs a 'length' (1 to 16383)")
        elif not 1 <= f.length <= MAX_VARCHAR:
            _problem(
                errors,
                name,
                f.name,
                f"varchar length {f.length} is outside 1..{MAX_VARCHAR}; "
                "use text for longer values",
            )
    elif f.length is not None:
        _problem(errors, name, f.name, f"'length' applies only to varchar, not to {f.type}")
    if f.type == "decimal":
        if f.precision is None:
            _problem(
                errors,
                name,
                f.name,
                "a decimal needs a 'precision' (1 to 65) and optionally a 'scale'",
            )
        elif not 1 <= f.precision <= MAX_PRECISION:
            _problem(
                errors,
                name,
                f.name,
                f"decimal precision {f.precision} is outside 1..{MAX_PRECISION}",
            )
        elif f.scale is not None and not 0 <= f.scale <= min(f.precision, MAX_SCALE):
            _problem(
                errors,
                name,
                f.name,
                f"decimal scale {f.scale} must be between 0 and the precision "
                f"({f.precision}), at most {MAX_SCALE}",
            )
    elif f.precision is not None or f.scale is not None:
        _problem(
            errors, name, f.name, f"'precision' and 'scale' apply only to decimal, not to {f.type}"
        )
    if f.type == "enum":
        if not f.values:
            _problem(errors, name, f.name, "an enum needs a non-empty list of 'values'")
        duplicates = sorted(v for v, n in Counter(f.values).items() if n > 1)
        if duplicates:
            _problem(errors, name, f.name, f"enum values repeat: {duplicates}")
        if any(v == "" for v in f.values):
            _problem(errors, name, f.name, "enum values cannot be empty strings")
    elif f.values:
        _problem(errors, name, f.name, f"'values' applies only to enum, not to {f.type}")


def _check_key_options(
    model: Model, f: Field, errors: list[Problem], warnings: list[Problem]
) -> None:
    """
    The primary key, C{auto_increment}, C{unique} and C{check} of field C{f}.
    """
    name = model.name
    in_key = f.name in model.primary_key_columns
    if in_key and f.nullable:
        _problem(errors, name, f.name, "a primary key column cannot be nullable")
    if f.auto_increment:
        if f.type not in ("integer", "big_integer"):
            _problem(
                errors,
                name,
                f.name,
                f"auto_increment needs an integer or big_integer field, not {f.type}",
            )
        if model.primary_key_columns != (f.name,):
            _problem(
                errors,
                name,
                f.name,
                "auto_increment is only portable on the sole primary key column",
            )
    if f.unique and f.type in UNINDEXABLE:
        _problem(
            errors, name, f.name, f"a {f.type} field cannot be unique portably; use varchar(n)"
        )
    if f.unique and model.primary_key_columns == (f.name,):
        _problem(warnings, name, f.name, "'unique' is redundant on the primary key; it is ignored")
    if f.check is not None and not f.check.strip():
        _problem(errors, name, f.name, "'check' must be a non-empty SQL expression")


def _check_foreign_key(schema: Schema, model: Model, f: Field, errors: list[Problem]) -> None:
    fk = f.foreign_key
    if fk is None:
        return
    for key, action in (("on_delete", fk.on_delete), ("on_update", fk.on_update)):
        if action not in REFERENTIAL_ACTIONS:
            _problem(
                errors,
                model.name,
                f.name,
                f"foreign key {key} {action!r} is not one of {', '.join(REFERENTIAL_ACTIONS)}",
            )
        if action == "set_null" and not f.nullable:
            _problem(
                errors, model.name, f.name, f"foreign key {key} set_null needs a nullable field"
            )
        if action == "set_default" and f.default is None:
            _problem(errors, model.name, f.name, f"foreign key {key} set_default needs a default")
    target = schema.model(fk.table)
    if target is None:
        _problem(
            errors,
            model.name,
            f.name,
            f"foreign key to unknown table {fk.table!r}; known tables: "
            f"{', '.join(m.name for m in schema.models)}",
        )
        return
    target_field = target.field(fk.column)
    if target_field is None:
        _problem(
            errors,
            model.name,
            f.name,
            f"foreign key to unknown column {fk.table}.{fk.column}; {fk.table} has "
            f"{', '.join(x.name for x in target.fields)}",
        )
        return
    unique_there = (
        target.primary_key_columns == (fk.column,)
        or target_field.unique
        or any(i.unique and i.columns == (fk.column,) for i in target.indexes)
    )
    if not unique_there:
        _problem(
            errors,
            model.name,
            f.name,
            f"foreign key target {fk.table}.{fk.column} must be its table's primary key or unique",
        )
    same = f.type == target_field.type or {f.type, target_field.type} <= {"varchar", "text"}
    if not same:
        _problem(
            errors,
            model.name,
            f.name,
            f"foreign key type {f.type} does not match {fk.table}.{fk.column} "
            f"({target_field.type}); MySQL refuses mismatched types",
        )


def _repeated(names: Iterable[str]) -> list[tuple[str, int]]:
    """
    The names given more than once, compared without case (as the databases do), with
    their counts, sorted.
    """
    counts = Counter(name.lower() for name in names)
    return [(name, n) for name, n in sorted(counts.items()) if n > 1]


def _check_model(
    schema: Schema, model: Model, errors: list[Problem], warnings: list[Problem]
) -> None:
    name = model.name
    _check_identifier("table", name, name, None, errors, warnings)
    if not model.fields:
        _problem(errors, name, None, "a model needs at least one field")
    for column_name, n in _repeated(f.name for f in model.fields):
        _problem(errors, name, column_name, f"duplicate column: defined {n} times")
    for f in model.fields:
        _check_field(model, f, errors, warnings)
        _check_foreign_key(schema, model, f, errors)
    if model.primary_key:
        for column_name in model.primary_key:
            if model.field(column_name) is None:
                _problem(errors, name, column_name, "primary key names a missing column")
        flagged = [
            f.name for f in model.fields if f.primary_key and f.name not in model.primary_key
        ]
        if flagged:
            _problem(
                errors,
                name,
                flagged[0],
                "flagged primary_key but missing from the model's primary_key list; "
                "use one or the other",
            )
    if len(set(model.primary_key_columns)) != len(model.primary_key_columns):
        _problem(errors, name, None, "the primary key repeats a column")
    if not model.primary_key_columns:
        _problem(warnings, name, None, "has no primary key; rows cannot be told apart reliably")
    seen: dict[tuple[tuple[str, ...], bool], int] = {}
    for position, index in enumerate(model.indexes):
        where = index.name or f"indexes[{position}]"
        if index.name is not None:
            _check_identifier("index", index.name, name, where, errors, warnings)
        if not index.columns:
            _problem(errors, name, where, "an index needs at least one column")
        for column_name in index.columns:
            indexed = model.field(column_name)
            if indexed is None:
                _problem(errors, name, where, f"index on missing column {column_name!r}")
            elif indexed.type in UNINDEXABLE:
                _problem(
                    errors,
                    name,
                    where,
                    f"index on {indexed.type} column {column_name!r} is not portable; "
                    "use varchar(n)",
                )
        if len(set(index.columns)) != len(index.columns):
            _problem(errors, name, where, "an index repeats a column")
        key = (index.columns, index.unique)
        if key in seen:
            _problem(errors, name, where, f"duplicate of indexes[{seen[key]}]")
        seen.setdefault(key, position)
    names = [i.name for i in model.indexes if i.name]
    for index_name, n in Counter(names).items():
        if n > 1:
            _problem(errors, name, index_name, "duplicate index name")
    for check_name, n in Counter(c.name for c in model.checks).items():
        if n > 1:
            _problem(errors, name, check_name, "duplicate check name")
    for check in model.checks:
        _check_identifier("check", check.name, name, check.name, errors, warnings)


def validate(schema: Schema) -> list[Problem]:
    """
    Check a schema's meaning: known types and their parameters, unique column names, keys,
    defaults that fit their type, indexes on existing columns, foreign keys to existing
    tables and columns of a matching type, identifiers every dialect accepts.

    @return: the warnings (things that work but deserve a look: reserved words, missing
        primary key...). An empty list means all is well.
    @raise ModelValidationError: listing every error found, each naming model and field.
    """
    errors: list[Problem] = []
    warnings: list[Problem] = []
    if not schema.models:
        _problem(warnings, None, None, "the schema has no models")
    for table, n in _repeated(m.name for m in schema.models):
        _problem(errors, table, None, f"duplicate model: defined {n} times")
    for model in schema.models:
        _check_model(schema, model, errors, warnings)
    if errors:
        raise ModelValidationError(errors)
    return warnings


def canonical_default(value: Any) -> Any:
    """
    The default as the generator renders it (dates as ISO strings, the current-time
    spellings as L{NOW}).
    """
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str) and value.strip().lower() in (NOW, "current_timestamp"):
        return NOW
    return value
