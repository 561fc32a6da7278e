# -*- test-case-name: tests.data.models.test_model -*-
"""
Model definitions: the attrs value classes a schema is made of, and the loaders that build
them from a YAML/JSON file, a dict, or attrs classes.

The three sources carry the same keys (API.md section 6)::

    models:
      - name: orders
        comment: "one row per order"
        fields:
          - {name: id, type: integer, primary_key: true, auto_increment: true}
          - {name: status, type: enum, values: [new, paid], default: new}
        indexes:
          - {columns: [status], unique: false}

Loading only checks the I{shape} (known keys, right kinds of values); L{validate
<pywatt_twisted.data.models._validate.validate>} checks the meaning (known types, existing
columns, foreign key targets...). Both report through L{ModelValidationError}.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import os
import re
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
from attrs import field as _attrs_field
from attrs import frozen

from pywatt_twisted.errors import ConfigurationError

#: The field types a model may use, in the order the documentation lists them.
FIELD_TYPES: tuple[str, ...] = (
    "integer",
    "big_integer",
    "float",
    "decimal",
    "boolean",
    "text",
    "varchar",
    "bytes",
    "date",
    "datetime",
    "json",
    "uuid",
    "enum",
)

#: Other spellings accepted for a field type; they load as the canonical name.
TYPE_ALIASES: Mapping[str, str] = {
    "int": "integer",
    "bigint": "big_integer",
    "big integer": "big_integer",
    "biginteger": "big_integer",
    "double": "float",
    "numeric": "decimal",
    "bool": "boolean",
    "blob": "bytes",
    "binary": "bytes",
    "timestamp": "datetime",
}

#: Referential actions for C{on_delete} / C{on_update}, canonical spelling.
REFERENTIAL_ACTIONS: tuple[str, ...] = (
    "no_action",
    "restrict",
    "cascade",
    "set_null",
    "set_default",
)

#: Key of the attrs field metadata that holds a column's options.
METADATA_KEY = "pywatt"

#: The special default that means "the current time" for a C{datetime} field.
NOW = "now"


@frozen
class Problem:
    """
    One thing wrong with a model definition.

    @ivar model: the model (table) it concerns, or C{None} for the schema as a whole.
    @ivar field: the field (column), index or constraint it concerns, or C{None}.
    @ivar message: what is wrong and what to do about it.
    """

    model: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = ".".join(p for p in (self.model, self.field) if p)
        return f"{where}: {self.message}" if where else self.message


class ModelValidationError(ConfigurationError):
    """
    A model definition is malformed or inconsistent.

    @ivar problems: every problem found, each naming its model and field.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the model definitions:\n{lines}"
        )


@frozen
class ForeignKey:
    """
    A reference from one column to a column of another (or the same) table.

    @ivar table: the referenced table.
    @ivar column: the referenced column.
    @ivar on_delete: one of L{REFERENTIAL_ACTIONS}.
    @ivar on_update: one of L{REFERENTIAL_ACTIONS}.
    """

    table: str
    column: str
    on_delete: str = "no_action"
    on_update: str = "no_action"


@frozen
class Field:
    """
    One column of a model.

    @ivar name: the column name.
    @ivar type: one of L{FIELD_TYPES}.
    @ivar length: characters of a C{varchar}.
    @ivar precision: total digits of a C{decimal}.
    @ivar scale: digits after the point of a C{decimal}.
    @ivar values: the allowed values of an C{enum}.
    @ivar nullable: whether NULL is allowed (primary key columns never are).
    @ivar default: the default value, or C{None} for none. A C{datetime} takes
        C{"now"} (the current time); other types take a literal of their kind.
    @ivar primary_key: part of the primary key.
    @ivar auto_increment: the database numbers new rows (sole integer primary key only).
    @ivar unique: values must be unique (a unique index C{uq_<table>_<column>}).
    @ivar check: an SQL boolean expression every row must satisfy.
    @ivar comment: a column comment, where the dialect has them.
    @ivar foreign_key: the column this one references, if any.
    """

    name: str
    type: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    values: tuple[str, ...] = ()
    nullable: bool = True
    default: Any = None
    primary_key: bool = False
    auto_increment: bool = False
    unique: bool = False
    check: str | None = None
    comment: str | None = None
    foreign_key: ForeignKey | None = None


@frozen
class Index:
    """
    An index over one or more columns.

    @ivar columns: the indexed columns, in order.
    @ivar unique: whether the combination must be unique.
    @ivar name: the index name; by default C{ix_<table>_<columns>} (C{ux_} when unique).
    """

    columns: tuple[str, ...]
    unique: bool = False
    name: str | None = None


@frozen
class Check:
    """
    A table-level check constraint.

    @ivar name: the constraint name (it becomes C{ck_<table>_<name>}).
    @ivar expression: an SQL boolean expression.
    """

    name: str
    expression: str


@frozen
class Model:
    """
    A table.

    @ivar name: the table name.
    @ivar fields: its columns, in order.
    @ivar indexes: its indexes (unique fields get theirs implicitly).
    @ivar checks: its table-level check constraints.
    @ivar comment: a table comment, where the dialect has them.
    @ivar primary_key: the primary key columns when given at model level (composite
        keys); fields flagged C{primary_key} are added in field order otherwise.
    """

    name: str
    fields: tuple[Field, ...]
    indexes: tuple[Index, ...] = ()
    checks: tuple[Check, ...] = ()
    comment: str | None = None
    primary_key: tuple[str, ...] = ()

    @property
    def primary_key_columns(self) -> tuple[str, ...]:
        """
        The primary key columns: the model-level list if given, else the flagged fields.
        """
        if self.primary_key:
            return self.primary_key
        return tuple(f.name for f in self.fields if f.primary_key)

    def field(self, name: str) -> Field | None:
        """
        The field called C{name}, or C{None}.
        """
        for f in self.fields:
            if f.name == name:
                return f
        return None


@frozen
class Schema:
    """
    A set of models, in declaration order.
    """

    models: tuple[Model, ...]

    def model(self, name: str) -> Model | None:
        """
        The model called C{name}, or C{None}.
        """
        for m in self.models:
            if m.name == name:
                return m
        return None

    def to_dict(self) -> dict[str, Any]:
        """
        The dict form of this schema: feeding it back to L{load_models} gives an equal
        schema.
        """
        return {"models": [_model_to_dict(m) for m in self.models]}


# --- loading from dicts --------------------------------------------------------------------

_FIELD_KEYS = {a.name for a in attrs.fields(Field)}
_MODEL_KEYS = {"name", "fields", "indexes", "checks", "comment", "primary_key"}
_INDEX_KEYS = {"columns", "unique", "name"}
_CHECK_KEYS = {"name", "expression"}
_FK_KEYS = {"table", "column", "on_delete", "on_update"}


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, model: str | None, field: str | None, message: str) -> None:
        self.problems.append(Problem(model, field, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ModelValidationError(self.problems)


def _unknown_keys(
    got: Mapping[str, Any], allowed: set[str], out: _Collector, model: str | None, where: str | None
) -> None:
    for key in sorted(set(got) - allowed):
        out.add(model, where, f"unknown key {key!r} (expected one of {', '.join(sorted(allowed))})")


def _name_of(raw: Any, out: _Collector, model: str | None, where: str) -> str | None:
    if isinstance(raw, str) and raw:
        return raw
    out.add(model, where, f"'name' must be a non-empty string, got {raw!r}")
    return None


def _bool(raw: Any, key: str, out: _Collector, model: str | None, where: str | None) -> bool:
    if isinstance(raw, bool):
        return raw
    out.add(model, where, f"{key!r} must be true or false, got {raw!r}")
    return False


def _opt_int(raw: Any, key: str, out: _Collector, model: str | None, where: str) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    out.add(model, where, f"{key!r} must be an integer, got {raw!r}")
    return None


def _opt_str(
    raw: Any, key: str, out: _Collector, model: str | None, where: str | None
) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    out.add(model, where, f"{key!r} must be a string, got {raw!r}")
    return None


def _str_list(
    raw: Any, key: str, out: _Collector, model: str | None, where: str | None
) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, Sequence) and all(isinstance(v, str) for v in raw):
        return tuple(raw)
    out.add(model, where, f"{key!r} must be a list of strings, got {raw!r}")
    return ()


def normalise_action(raw: str) -> str:
    """
    Canonical spelling of a referential action: C{"SET NULL"} and C{"set-null"} become
    C{"set_null"}. Unknown actions come back unchanged (validation reports them).
    """
    return re.sub(r"[\s\-]+", "_", raw.strip().lower())


def _foreign_key(raw: Any, out: _Collector, model: str, where: str) -> ForeignKey | None:
    if raw is None:
        return None
    if isinstance(raw, ForeignKey):
        return raw
    if isinstance(raw, str) and "." in raw:
        target_table, _, target_column = raw.partition(".")
        return ForeignKey(target_table, target_column)
    if not isinstance(raw, Mapping):
        out.add(model, where, f"'foreign_key' must be a mapping or 'table.column', got {raw!r}")
        return None
    _unknown_keys(raw, _FK_KEYS, out, model, f"{where}.foreign_key")
    table = _opt_str(raw.get("table"), "table", out, model, where)
    column = _opt_str(raw.get("column"), "column", out, model, where)
    if not table or not column:
        out.add(model, where, "'foreign_key' needs both 'table' and 'column'")
        return None
    actions = {}
    for key in ("on_delete", "on_update"):
        value = _opt_str(raw.get(key), key, out, model, where)
        actions[key] = normalise_action(value) if value else "no_action"
    return ForeignKey(table, column, **actions)


def _field(
    raw: Any, out: _Collector, model: str, position: int, in_key: frozenset[str] = frozenset()
) -> Field | None:
    if isinstance(raw, Field):
        return raw
    if not isinstance(raw, Mapping):
        out.add(model, f"fields[{position}]", f"a field must be a mapping, got {raw!r}")
        return None
    name = _name_of(raw.get("name"), out, model, f"fields[{position}]")
    if name is None:
        return None
    _unknown_keys(raw, _FIELD_KEYS, out, model, name)
    type_ = raw.get("type")
    if not isinstance(type_, str) or not type_:
        out.add(model, name, f"'type' must be one of {', '.join(FIELD_TYPES)}, got {type_!r}")
        type_ = ""
    type_ = TYPE_ALIASES.get(type_.strip().lower(), type_.strip().lower())
    values = raw.get("values")
    if isinstance(values, Sequence) and not isinstance(values, str):
        values = tuple(str(v) if isinstance(v, (int, float)) else v for v in values)
    primary_key = _bool(raw.get("primary_key", False), "primary_key", out, model, name)
    nullable_raw = raw.get("nullable")
    nullable = (
        not (primary_key or name in in_key)
        if nullable_raw is None
        else _bool(nullable_raw, "nullable", out, model, name)
    )
    return Field(
        name=name,
        type=type_,
        length=_opt_int(raw.get("length"), "length", out, model, name),
        precision=_opt_int(raw.get("precision"), "precision", out, model, name),
        scale=_opt_int(raw.get("scale"), "scale", out, model, name),
        values=_str_list(values, "values", out, model, name),
        nullable=nullable,
        default=raw.get("default"),
        primary_key=primary_key,
        auto_increment=_bool(raw.get("auto_increment", False), "auto_increment", out, model, name),
        unique=_bool(raw.get("unique", False), "unique", out, model, name),
        check=_opt_str(raw.get("check"), "check", out, model, name),
        comment=_opt_str(raw.get("comment"), "comment", out, model, name),
        foreign_key=_foreign_key(raw.get("foreign_key"), out, model, name),
    )


def _index(raw: Any, out: _Collector, model: str, position: int) -> Index | None:
    if isinstance(raw, Index):
        return raw
    where = f"indexes[{position}]"
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        raw = {"columns": list(raw)}
    if not isinstance(raw, Mapping):
        out.add(model, where, f"an index must be a mapping with 'columns', got {raw!r}")
        return None
    _unknown_keys(raw, _INDEX_KEYS, out, model, where)
    columns = _str_list(raw.get("columns"), "columns", out, model, where)
    return Index(
        columns=columns,
        unique=_bool(raw.get("unique", False), "unique", out, model, where),
        name=_opt_str(raw.get("name"), "name", out, model, where),
    )


def _check(raw: Any, out: _Collector, model: str, position: int) -> Check | None:
    if isinstance(raw, Check):
        return raw
    where = f"checks[{position}]"
    if not isinstance(raw, Mapping):
        out.add(
            model, where, f"a check must be a mapping with 'name' and 'expression', got {raw!r}"
        )
        return None
    _unknown_keys(raw, _CHECK_KEYS, out, model, where)
    name = _name_of(raw.get("name"), out, model, where)
    expression = _opt_str(raw.get("expression"), "expression", out, model, where)
    if name is None or not expression:
        if name is not None:
            out.add(model, where, "'expression' must be a non-empty SQL expression")
        return None
    return Check(name, expression)


def _list(raw: Any, key: str, out: _Collector, model: str | None) -> list[Any]:
    if raw is None:
        return []
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        return list(raw)
    out.add(model, None, f"{key!r} must be a list, got {type(raw).__name__}")
    return []


def model_from_dict(
    raw: Mapping[str, Any], out: _Collector | None = None, position: int = 0
) -> Model:
    """
    Build one L{Model} from its dict form.

    @raise ModelValidationError: if the dict does not have the model shape.
    """
    collector = out if out is not None else _Collector()
    model = _model_from_dict(raw, collector, position)
    if out is None:
        collector.raise_if_any()
    assert model is not None
    return model


def _model_from_dict(raw: Any, out: _Collector, position: int) -> Model | None:
    if isinstance(raw, Model):
        return raw
    if not isinstance(raw, Mapping):
        out.add(f"models[{position}]", None, f"a model must be a mapping, got {raw!r}")
        return None
    name = _name_of(raw.get("name"), out, f"models[{position}]", "name") or f"models[{position}]"
    _unknown_keys(raw, _MODEL_KEYS, out, name, None)
    primary_key = _str_list(raw.get("primary_key"), "primary_key", out, name, None)
    fields = [
        _field(f, out, name, i, frozenset(primary_key))
        for i, f in enumerate(_list(raw.get("fields"), "fields", out, name))
    ]
    indexes = [
        _index(x, out, name, i)
        for i, x in enumerate(_list(raw.get("indexes"), "indexes", out, name))
    ]
    checks = [
        _check(c, out, name, i) for i, c in enumerate(_list(raw.get("checks"), "checks", out, name))
    ]
    return Model(
        name=name,
        fields=tuple(f for f in fields if f is not None),
        indexes=tuple(i for i in indexes if i is not None),
        checks=tuple(c for c in checks if c is not None),
        comment=_opt_str(raw.get("comment"), "comment", out, name, None),
        primary_key=primary_key,
    )


def schema_from_dict(raw: Any) -> Schema:
    """
    Build a L{Schema} from C{{"models": [...]}} (or directly from the list of models).

    @raise ModelValidationError: if it does not have the model file shape.
    """
    out = _Collector()
    if isinstance(raw, Mapping):
        _unknown_keys(raw, {"models"}, out, None, None)
        if "models" not in raw:
            out.add(None, None, "expected a top-level 'models' list")
        entries = _list(raw.get("models"), "models", out, None)
    elif isinstance(raw, Sequence) and not isinstance(raw, str):
        entries = list(raw)
    else:
        out.add(None, None, f"expected a mapping with a 'models' list, got {type(raw).__name__}")
        entries = []
    models = [_model_from_dict(m, out, i) for i, m in enumerate(entries)]
    out.raise_if_any()
    return Schema(tuple(m for m in models if m is not None))


# --- loading from files ---------------------------------------------------------------------


def load_file(path: str | os.PathLike[str]) -> Schema:
    """
    Load a model file: YAML (C{.yaml}, C{.yml}) or JSON (C{.json}; anything else is tried
    as YAML, which is a superset of JSON).

    @raise ModelValidationError: if the file cannot be read or parsed, or has the wrong
        shape.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ModelValidationError(
            [Problem(None, None, f"cannot read model file {path!r}: {e.strerror}")]
        )
    try:
        if path.endswith(".json"):
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except (ValueError, ImportError) as e:
        raise ModelValidationError([Problem(None, None, f"cannot parse model file {path!r}: {e}")])
    except Exception as e:  # yaml.YAMLError and friends
        raise ModelValidationError([Problem(None, None, f"cannot parse model file {path!r}: {e}")])
    return schema_from_dict(raw)


# --- attrs classes --------------------------------------------------------------------------

_C = TypeVar("_C", bound=type)

_PYTHON_TYPES: Mapping[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "float",
    decimal.Decimal: "decimal",
    str: "text",
    bytes: "bytes",
    datetime.datetime: "datetime",
    datetime.date: "date",
    uuid.UUID: "uuid",
    dict: "json",
    list: "json",
}


def column(**options: Any) -> Any:
    """
    An attrs field carrying column options, for classes decorated with L{model}::

        email: str = column(type="varchar", length=200, unique=True)

    Keyword arguments are the field keys of the model file (C{type}, C{length},
    C{nullable}, C{default}, C{foreign_key}...). The attrs default of the Python attribute
    is C{None} unless C{attrs_default=} is given; it is unrelated to the column default.
    """
    attrs_default = options.pop("attrs_default", None)
    return _attrs_field(default=attrs_default, metadata={METADATA_KEY: options})


def model(
    name: str | None = None,
    *,
    indexes: Iterable[Mapping[str, Any] | Index] = (),
    checks: Iterable[Mapping[str, Any] | Check] = (),
    comment: str | None = None,
    primary_key: Sequence[str] = (),
) -> Callable[[_C], _C]:
    """
    Mark an attrs class as a model. Each attribute becomes a column; its options come from
    C{metadata={"pywatt": {...}}} (or L{column}), and what is not given is inferred from the
    annotation (C{int} -> integer, C{str} -> text, C{X | None} -> nullable, an C{enum.Enum}
    subclass -> enum with its member values...).

    @param name: the table name (default: the class name in snake_case).
    """

    def decorate(cls: _C) -> _C:
        cls.__pywatt_model__ = {  # type: ignore[attr-defined]
            "name": name or _snake(cls.__name__),
            "indexes": list(indexes),
            "checks": list(checks),
            "comment": comment,
            "primary_key": list(primary_key),
        }
        return cls

    return decorate


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _infer(annotation: Any) -> tuple[dict[str, Any], bool]:
    """
    Field options inferred from a Python annotation, and whether it allows None.
    """
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
        origin = typing.get_origin(annotation)
    if origin in (dict, list):
        return {"type": "json"}, nullable
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"type": "enum", "values": [str(m.value) for m in annotation]}, nullable
    for python_type, field_type in _PYTHON_TYPES.items():
        if annotation is python_type:
            return {"type": field_type}, nullable
    return {}, nullable


def model_from_attrs(cls: type, out: _Collector | None = None, position: int = 0) -> Model:
    """
    Build a L{Model} from an attrs class (see L{model} for the conventions).

    @raise ModelValidationError: if the class is not an attrs class, or a field's options
        have the wrong shape.
    """
    collector = out if out is not None else _Collector()
    if not attrs.has(cls):
        collector.add(getattr(cls, "__name__", repr(cls)), None, "is not an attrs class")
        collector.raise_if_any()
    options = dict(getattr(cls, "__pywatt_model__", None) or {"name": _snake(cls.__name__)})
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    fields = []
    for attribute in attrs.fields(cls):
        column_options = dict(attribute.metadata.get(METADATA_KEY, {}))
        inferred, nullable = _infer(hints.get(attribute.name, attribute.type))
        merged: dict[str, Any] = {"name": attribute.name, **inferred}
        if nullable:
            merged["nullable"] = True
        elif not column_options.get("primary_key"):
            merged["nullable"] = False
        merged.update(column_options)
        fields.append(merged)
    options["fields"] = fields
    result = _model_from_dict(options, collector, position)
    if out is None:
        collector.raise_if_any()
    assert result is not None
    return result


# --- the one entry point --------------------------------------------------------------------


def load_models(source: Any) -> Schema:
    """
    Load a schema from any of the supported sources.

    @param source: a path to a C{.yaml}/C{.yml}/C{.json} model file; a dict with a
        C{"models"} list; a list whose items are model dicts, attrs model classes or
        L{Model}s (mixing is allowed); or a L{Schema} (returned as is).
    @raise ModelValidationError: if the source cannot be read or has the wrong shape. The
        meaning (known types, existing columns...) is checked by C{validate}.
    """
    if isinstance(source, Schema):
        return source
    if isinstance(source, (str, os.PathLike)):
        return load_file(source)
    if isinstance(source, Mapping):
        return schema_from_dict(source)
    if isinstance(source, type):
        source = [source]
    if isinstance(source, Iterable):
        out = _Collector()
        models: list[Model | None] = []
        for i, item in enumerate(source):
            if isinstance(item, type):
                models.append(model_from_attrs(item, out, i))
            else:
                models.append(_model_from_dict(item, out, i))
        out.raise_if_any()
        return Schema(tuple(m for m in models if m is not None))
    raise ModelValidationError(
        [
            Problem(
                None,
                None,
                "models must be a file path, a dict with 'models', or a list of attrs "
                f"classes or dicts; got {type(source).__name__}",
            )
        ]
    )


# --- back to dicts --------------------------------------------------------------------------


def _field_to_dict(f: Field) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "type": f.type}
    defaults = Field(name=f.name, type=f.type)
    for a in attrs.fields(Field):
        if a.name in ("name", "type"):
            continue
        value = getattr(f, a.name)
        if a.name == "nullable":
            if value != (not f.primary_key):
                out["nullable"] = value
            continue
        if value == getattr(defaults, a.name):
            continue
        if isinstance(value, ForeignKey):
            value = attrs.asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[a.name] = value
    return out


def _model_to_dict(m: Model) -> dict[str, Any]:
    out: dict[str, Any] = {"name": m.name, "fields": [_field_to_dict(f) for f in m.fields]}
    if m.indexes:
        out["indexes"] = [
            {"columns": list(i.columns), "unique": i.unique, **({"name": i.name} if i.name else {})}
            for i in m.indexes
        ]
    if m.checks:
        out["checks"] = [{"name": c.name, "expression": c.expression} for c in m.checks]
    if m.comment is not None:
        out["comment"] = m.comment
    if m.primary_key:
        out["primary_key"] = list(m.primary_key)
    return out
