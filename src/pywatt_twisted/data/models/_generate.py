# -*- test-case-name: tests.data.models.test_generate -*-
"""
Models from a live database: L{models_from_database} turns an introspected schema back
into a L{Schema}, and L{python_source} writes that schema as the Python a module uses
(C{@model} attrs classes and a C{MODELS} list), for C{pywatt db model generate}.

The round trip is exact for what the models can say: types, nullability, defaults,
primary keys (composite ones too), unique columns, indexes (with their names) and
single-column foreign keys with their actions, check constraints and comments. Applying
the generated models to an empty database and comparing them with the source database
(C{pywatt db schema diff}) gives no changes. What the models cannot say (a column type
outside the model types, a foreign key over several columns) is an error naming the
table and column; what is approximated (a check constraint whose name the generator would
not give) is a warning.
"""

from __future__ import annotations

import datetime
import decimal
import json
import keyword
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from attrs import frozen

from pywatt_twisted.data.models._ddl import (
    canonical_default,
    constraint_name,
    get_dialect,
    index_name,
    parse_default_sql,
)
from pywatt_twisted.data.models._introspect import (
    ColumnInfo,
    DatabaseSchema,
    TableInfo,
    Transaction,
    sqlite_checks,
)
from pywatt_twisted.data.models._model import (
    NOW,
    Check,
    Field,
    ForeignKey,
    Index,
    Model,
    ModelValidationError,
    Problem,
    Schema,
    _infer,
)

#: Longest line of the generated source before a call is split over several lines.
LINE_LENGTH = 100


@frozen
class Generated:
    """
    The models read from a database.

    @ivar schema: the models, one per table, sorted by table name.
    @ivar warnings: what was approximated, each naming its table (and column).
    @ivar dialect: the database's dialect.
    """

    schema: Schema
    warnings: tuple[Problem, ...]
    dialect: str


# --- check constraint expressions -----------------------------------------------------------

_PG_CHECKS = """
SELECT t.relname AS table_name, con.conname AS name, pg_get_constraintdef(con.oid) AS definition
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema() AND con.contype = 'c'
ORDER BY t.relname, con.conname
"""

_MY_CHECKS = (
    "SELECT TABLE_NAME AS table_name, CONSTRAINT_NAME AS name, CHECK_CLAUSE AS clause "
    "FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()"
)


def _text(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    return value


def _pg_expression(definition: str) -> str:
    text = re.sub(r"\s+NOT VALID$", "", definition.strip())
    if text.upper().startswith("CHECK"):
        text = text[5:].strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return text


def check_expressions(tx: Transaction, dialect: str) -> dict[str, dict[str, str]]:
    """
    The expression of every named check constraint, by table and constraint name (the
    introspection keeps only the names, which is all the schema diff compares).
    """
    out: dict[str, dict[str, str]] = {}
    if dialect == "postgresql":
        for r in tx.query(_PG_CHECKS):
            out.setdefault(r["table_name"], {})[r["name"]] = _pg_expression(r["definition"])
    elif dialect == "mysql":
        for r in tx.query(_MY_CHECKS):
            out.setdefault(_text(r["table_name"]), {})[_text(r["name"])] = _text(r["clause"])
    else:
        for r in tx.query(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ):
            out[r["name"]] = sqlite_checks(r["sql"] or "")
    return out


# --- database -> models ---------------------------------------------------------------------


def _with_dependencies(
    current: DatabaseSchema, wanted: Sequence[str], notes: list[Problem]
) -> list[str]:
    missing = [t for t in wanted if t not in current.tables]
    if missing:
        known = ", ".join(sorted(current.tables)) or "none"
        raise ModelValidationError(
            [Problem(t, None, f"no such table in the database (tables: {known})") for t in missing]
        )
    chosen = list(dict.fromkeys(wanted))
    position = 0
    while position < len(chosen):
        table = current.tables[chosen[position]]
        for fk in table.foreign_keys:
            if fk.table not in chosen and fk.table in current.tables:
                chosen.append(fk.table)
                notes.append(
                    Problem(
                        fk.table,
                        None,
                        f"included because {table.name}.{', '.join(fk.columns)} references it",
                    )
                )
        position += 1
    return sorted(chosen)


def _default(
    table: str, name: str, type_: str, raw: str | None, dialect: str, notes: list[Problem]
) -> Any:
    value = parse_default_sql(raw, get_dialect(dialect))
    if value is None:
        return None
    probe = Field(name=name, type=type_)
    try:
        if type_ == "boolean":
            return canonical_default(probe, value) == "true"
        if type_ in ("integer", "big_integer"):
            return int(decimal.Decimal(str(value)))
        if type_ == "float":
            return float(value)
        if type_ == "decimal":
            return format(decimal.Decimal(str(value)).normalize(), "f")
    except (ValueError, decimal.InvalidOperation):
        pass
    if type_ == "datetime" and value == NOW:
        return NOW
    if type_ in ("text", "varchar", "enum", "uuid", "date") and isinstance(value, str):
        if type_ == "date":
            try:
                datetime.date.fromisoformat(value)
            except ValueError:
                value = None
        if type_ == "uuid":
            try:
                uuid.UUID(value)
            except ValueError:
                value = None
        if value is not None:
            return value
    notes.append(
        Problem(
            table,
            name,
            f"default {raw} cannot be written as a model default of a {type_} field; "
            "left out (the schema diff will show it)",
        )
    )
    return None


def _model(
    t: TableInfo, current: DatabaseSchema, checks: Mapping[str, str], notes: list[Problem]
) -> Model:
    """
    The model of table C{t}; C{checks} are its check constraints (name -> expression).
    What the model cannot say raises L{ModelValidationError}; what it says differently
    from the database is added to C{notes}.
    """
    dialect = current.dialect
    errors: list[Problem] = []
    single_fk = _foreign_keys(t, dialect, errors)
    sole_key = t.primary_key if len(t.primary_key) == 1 else ()
    unique_columns = {
        i.columns[0]
        for i in t.indexes
        if i.unique
        and len(i.columns) == 1
        and i.name == constraint_name("uq", t.name, i.columns[0])
        and i.columns != sole_key
    }
    remaining = dict(checks)
    fields = []
    for c in t.columns:
        field = _field(t, c, dialect, sole_key, unique_columns, single_fk, remaining, notes, errors)
        if field is not None:
            fields.append(field)
    if errors:
        raise ModelValidationError(errors)
    draft = Model(name=t.name, fields=tuple(fields))
    return Model(
        name=t.name,
        fields=tuple(fields),
        indexes=_indexes(t, draft, dialect, unique_columns),
        checks=_checks(t, remaining, notes),
        comment=t.comment,
        primary_key=t.primary_key if len(t.primary_key) > 1 else (),
    )


def _foreign_keys(t: TableInfo, dialect: str, errors: list[Problem]) -> dict[str, ForeignKey]:
    """
    C{{column: ForeignKey}} for the single-column foreign keys of C{t}; the others are
    added to C{errors}.
    """
    single_fk = {}
    for fk in t.foreign_keys:
        if len(fk.columns) != 1:
            errors.append(
                Problem(
                    t.name,
                    ", ".join(fk.columns),
                    f"foreign key over several columns ({', '.join(fk.columns)}) -> "
                    f"{fk.table}; models have single-column foreign keys only",
                )
            )
            continue
        on_delete, on_update = fk.on_delete, fk.on_update
        if dialect == "mysql":  # InnoDB reports NO ACTION as RESTRICT; they are the same
            on_delete = "no_action" if on_delete == "restrict" else on_delete
            on_update = "no_action" if on_update == "restrict" else on_update
        single_fk[fk.columns[0]] = ForeignKey(fk.table, fk.ref_columns[0], on_delete, on_update)
    return single_fk


def _field(
    t: TableInfo,
    c: ColumnInfo,
    dialect: str,
    sole_key: tuple[str, ...],
    unique_columns: set[str],
    single_fk: Mapping[str, ForeignKey],
    remaining: dict[str, str],
    notes: list[Problem],
    errors: list[Problem],
) -> Field | None:
    """
    The field of column C{c}, or C{None} (added to C{errors}) when its type is not a
    model type. The checks the field carries (or implies) are taken out of C{remaining}.
    """
    if c.type.kind.startswith("other:"):
        errors.append(
            Problem(
                t.name,
                c.name,
                f"column type {c.raw_type!r} is not one of the model types; "
                "leave the table out (--table) or change the column",
            )
        )
        return None
    type_ = c.type.kind
    for implied in ("enum", "json"):
        if c.type.kind == implied:
            remaining.pop(constraint_name("ck", t.name, c.name, implied), None)
    if dialect == "mysql" and type_ == "json" and "json_valid" in remaining.get(c.name, ""):
        remaining.pop(c.name)  # MariaDB's own check on a JSON column
    check = remaining.pop(constraint_name("ck", t.name, c.name), None)
    auto = c.auto_increment and sole_key == (c.name,)
    if c.auto_increment and not auto:
        notes.append(
            Problem(t.name, c.name, "numbered by the database but not the sole key; left out")
        )
    return Field(
        name=c.name,
        type=type_,
        length=c.type.length,
        precision=c.type.precision,
        scale=c.type.scale if type_ == "decimal" else None,
        values=c.type.values,
        nullable=c.nullable and c.name not in t.primary_key,
        default=None
        if c.auto_increment
        else _default(t.name, c.name, type_, c.default, dialect, notes),
        primary_key=c.name in sole_key,
        auto_increment=auto,
        unique=c.name in unique_columns,
        check=check,
        comment=c.comment,
        foreign_key=single_fk.get(c.name),
    )


def _indexes(
    t: TableInfo, draft: Model, dialect: str, unique_columns: set[str]
) -> tuple[Index, ...]:
    """
    The indexes of C{t} that the model spells out: not those its fields imply (a
    unique column, InnoDB's index for a foreign key); a name is kept when it is not the
    generated one.
    """
    fk_names = {fk.name: fk.columns for fk in t.foreign_keys if fk.name}
    indexes = []
    for i in sorted(t.indexes, key=lambda i: i.name):
        if i.unique and len(i.columns) == 1 and i.columns[0] in unique_columns:
            if i.name == constraint_name("uq", t.name, i.columns[0]):
                continue
        if dialect == "mysql" and not i.unique and fk_names.get(i.name) == i.columns:
            continue  # the index InnoDB makes for a foreign key
        index = Index(i.columns, i.unique)
        if i.name != index_name(draft, index) and not i.name.startswith("sqlite_autoindex_"):
            index = Index(i.columns, i.unique, i.name)
        indexes.append(index)
    return tuple(indexes)


def _checks(t: TableInfo, remaining: Mapping[str, str], notes: list[Problem]) -> tuple[Check, ...]:
    """
    The table-level checks left in C{remaining}, named as the generator names them (a
    rename is added to C{notes}).
    """
    model_checks = []
    prefix = constraint_name("ck", t.name) + "_"
    for name, expression in sorted(remaining.items()):
        short = name[len(prefix) :] if name.startswith(prefix) else name
        if constraint_name("ck", t.name, short) != name:
            notes.append(
                Problem(
                    t.name,
                    name,
                    f"check {name!r} becomes {constraint_name('ck', t.name, short)!r} "
                    "in the models (the generator names checks ck_<table>_<name>)",
                )
            )
        model_checks.append(Check(short, expression))
    return tuple(model_checks)


def _widen_sqlite_keys(models: list[Model]) -> list[Model]:
    """
    SQLite stores an auto-increment C{big_integer} key as C{INTEGER}; when C{big_integer}
    columns reference it, it was a C{big_integer} (and the foreign key types must match).
    """
    wide = {
        (f.foreign_key.table, f.foreign_key.column)
        for m in models
        for f in m.fields
        if f.foreign_key is not None and f.type == "big_integer"
    }
    out = []
    for m in models:
        fields = tuple(
            Field(**{**_fields(f), "type": "big_integer"})
            if f.auto_increment and f.type == "integer" and (m.name, f.name) in wide
            else f
            for f in m.fields
        )
        out.append(Model(m.name, fields, m.indexes, m.checks, m.comment, m.primary_key))
    return out


def _fields(f: Field) -> dict[str, Any]:
    return attrs.asdict(f, recurse=False)


def models_from_database(
    current: DatabaseSchema,
    tables: Sequence[str] = (),
    checks: Mapping[str, Mapping[str, str]] | None = None,
) -> Generated:
    """
    The models that describe tables of an introspected database.

    @param tables: the tables to describe (default: all); the tables they reference are
        included too.
    @param checks: the check constraint expressions, from L{check_expressions}.
    @raise ModelValidationError: for what the models cannot express, or for a table that
        is not there.
    """
    notes: list[Problem] = []
    names = _with_dependencies(current, tables, notes) if tables else sorted(current.tables)
    models = []
    errors: list[Problem] = []
    for name in names:
        try:
            models.append(
                _model(current.tables[name], current, (checks or {}).get(name, {}), notes)
            )
        except ModelValidationError as e:
            errors.extend(e.problems)
    if errors:
        raise ModelValidationError(errors)
    if current.dialect == "sqlite":
        models = _widen_sqlite_keys(models)
    return Generated(Schema(tuple(models)), tuple(notes), current.dialect)


# --- models -> Python -----------------------------------------------------------------------

#: Python annotation (and the import it needs) per field type.
_ANNOTATIONS: Mapping[str, tuple[Any, str, str | None]] = {
    "integer": (int, "int", None),
    "big_integer": (int, "int", None),
    "float": (float, "float", None),
    "decimal": (decimal.Decimal, "decimal.Decimal", "import decimal"),
    "boolean": (bool, "bool", None),
    "text": (str, "str", None),
    "varchar": (str, "str", None),
    "enum": (str, "str", None),
    "bytes": (bytes, "bytes", None),
    "date": (datetime.date, "datetime.date", "import datetime"),
    "datetime": (datetime.datetime, "datetime.datetime", "import datetime"),
    "json": (Any, "Any", "from typing import Any"),
    "uuid": (uuid.UUID, "uuid.UUID", "import uuid"),
}

_RESERVED_CLASS_NAMES = {"Any", "MODELS", "attrs", "column", "model", "datetime", "decimal", "uuid"}


def literal(value: Any) -> str:
    """
    Python source for a plain value on one line (strings in double quotes, as ruff
    formats them).
    """
    if isinstance(value, Call):
        return value.flat()
    if isinstance(value, str):
        if '"' in value and "'" not in value:
            return repr(value)
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


@frozen
class Call:
    """
    A call in the generated source: C{name(key=value, ...)}.
    """

    name: str
    arguments: tuple[tuple[str, Any], ...]

    def flat(self) -> str:
        return f"{self.name}({', '.join(k + literal(v) for k, v in self.arguments)})"


def _items(value: Any) -> tuple[str, str, list[tuple[str, Any]]] | None:
    if isinstance(value, Call):
        return f"{value.name}(", ")", list(value.arguments)
    if isinstance(value, (list, tuple)) and value:
        return "[", "]", [("", v) for v in value]
    if isinstance(value, dict) and value:
        return "{", "}", [(f"{literal(k)}: ", v) for k, v in value.items()]
    return None


def layout(value: Any, indent: str = "", lead: str = "", trail: str = "") -> str:
    """
    C{value} as source lines no longer than L{LINE_LENGTH} where possible, split the way
    ruff formats: on one line if it fits; else its items on one indented line; else one
    item per line with a trailing comma.
    """
    flat = f"{indent}{lead}{literal(value)}{trail}"
    parts = _items(value)
    if len(flat) <= LINE_LENGTH or parts is None:
        return flat
    opening, closing, items = parts
    inner = indent + "    "
    hugged = inner + ", ".join(k + literal(v) for k, v in items)
    if len(hugged) <= LINE_LENGTH and not isinstance(value, (list, tuple, dict)):
        body = hugged
    else:
        body = "\n".join(layout(v, inner, k, ",") for k, v in items)
    return f"{indent}{lead}{opening}\n{body}\n{indent}{closing}{trail}"


def _class_name(table: str, taken: set[str]) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", table) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts) or "Table"
    if name[0].isdigit():
        name = "T" + name
    if keyword.iskeyword(name) or name in _RESERVED_CLASS_NAMES:
        name += "Table"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    taken.add(name)
    return name


def _attribute_ok(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("__")


def _foreign_key_dict(fk: ForeignKey) -> dict[str, str]:
    out = {"table": fk.table, "column": fk.column}
    if fk.on_delete != "no_action":
        out["on_delete"] = fk.on_delete
    if fk.on_update != "no_action":
        out["on_update"] = fk.on_update
    return out


def _index_dict(i: Index) -> dict[str, Any]:
    out: dict[str, Any] = {"columns": list(i.columns)}
    if i.unique:
        out["unique"] = True
    if i.name:
        out["name"] = i.name
    return out


def _column_source(f: Field, imports: set[str]) -> str:
    python_type, text, needs = _ANNOTATIONS[f.type]
    if needs:
        imports.add(needs)
    annotation = python_type | None if f.nullable and python_type is not Any else python_type
    inferred, inferred_nullable = _infer(annotation)
    if f.nullable and python_type is not Any:
        text += " | None"
    options: list[tuple[str, Any]] = []
    if inferred.get("type") != f.type:
        options.append(("type=", f.type))
    for key in ("length", "precision", "scale"):
        if getattr(f, key) is not None:
            options.append((f"{key}=", getattr(f, key)))
    if f.values:
        options.append(("values=", list(f.values)))
    # what model_from_attrs concludes from the annotation alone
    concluded = True if inferred_nullable else (False if not f.primary_key else f.nullable)
    if concluded != f.nullable:
        options.append(("nullable=", f.nullable))
    if f.default is not None:
        options.append(("default=", f.default))
    for key in ("primary_key", "auto_increment", "unique"):
        if getattr(f, key):
            options.append((f"{key}=", True))
    if f.check is not None:
        options.append(("check=", f.check))
    if f.comment is not None:
        options.append(("comment=", f.comment))
    if f.foreign_key is not None:
        options.append(("foreign_key=", _foreign_key_dict(f.foreign_key)))
    return layout(Call("column", tuple(options)), "    ", f"{f.name}: {text} = ")


def _class_source(m: Model, class_name: str, imports: set[str]) -> str:
    arguments: list[tuple[str, Any]] = [("", m.name)]
    if m.indexes:
        arguments.append(("indexes=", [_index_dict(i) for i in m.indexes]))
    if m.checks:
        arguments.append(
            ("checks=", [{"name": c.name, "expression": c.expression} for c in m.checks])
        )
    if m.comment is not None:
        arguments.append(("comment=", m.comment))
    if m.primary_key:
        arguments.append(("primary_key=", list(m.primary_key)))
    lines = [layout(Call("model", tuple(arguments)), "", "@"), "@attrs.define"]
    lines.append(f"class {class_name}:")
    lines.extend(_column_source(f, imports) for f in m.fields)
    return "\n".join(lines) + "\n"


def _dict_entry(m: Model) -> str:
    """
    A model whose column names cannot be Python attributes (such as C{class}), in the
    dict form, as an item of C{MODELS}.
    """
    from pywatt_twisted.data.models._model import _model_to_dict

    raw = _model_to_dict(m)
    # one field per line even when short, so that the table reads as a table
    fields = "".join(f"{layout(f, '            ', '', ',')}\n" for f in raw.pop("fields"))
    rest = "".join(
        f"{layout(v, '        ', f'{literal(k)}: ', ',')}\n" for k, v in raw.items() if k != "name"
    )
    return (
        f'    {{\n        "name": {literal(m.name)},\n        "fields": [\n{fields}'
        f"        ],\n{rest}    }},\n"
    )


def python_source(schema: Schema, origin: str = "a database") -> str:
    """
    The models as a Python module: one C{@model} attrs class per table (a dict for a
    table whose column names cannot be Python attributes, such as C{class}), and
    C{MODELS}, the list a module passes as C{@pywatt_module(models=MODELS)}. The text is
    the same for the same schema (tables sorted by name, columns in table order).

    @param origin: what the docstring says the models were read from (never a password).
    """
    imports: set[str] = set()
    blocks: list[str] = []
    entries: list[str] = []
    taken: set[str] = set()
    for m in sorted(schema.models, key=lambda m: m.name):
        if all(_attribute_ok(f.name) for f in m.fields):
            name = _class_name(m.name, taken)
            blocks.append(_class_source(m, name, imports))
            entries.append(f"    {name},\n")
        else:
            entries.append(_dict_entry(m))
    header = [
        '"""',
        f"Models generated by `pywatt db model generate` from {origin}.",
        "",
        "Pass MODELS to `@pywatt_module(models=MODELS)`, or compare them with a database:",
        "`pywatt db schema diff --models <this file> --url URL`.",
        '"""',
        "",
    ]
    standard = sorted(i for i in imports if i.startswith("import "))
    standard += sorted(i for i in imports if i.startswith("from "))
    if standard:
        header += [*standard, ""]
    if blocks:
        header += ["import attrs", "from pywatt_twisted.data.models import column, model", ""]
    parts = ["\n".join(header)]
    parts.extend("\n" + block for block in blocks)
    parts.append(
        f"\nMODELS = [\n{''.join(entries)}]\n" if entries else "\nMODELS: list[object] = []\n"
    )
    return "\n".join(parts)


def load_source(source: str, name: str = "pywatt_generated_models") -> Schema:
    """
    Run generated source and load its C{MODELS}: what a module would get.
    """
    from pywatt_twisted.data.models._model import load_models

    namespace: dict[str, Any] = {"__name__": name}
    # dont_inherit: this module's "from __future__ import annotations" must not apply
    exec(compile(source, f"<{name}>", "exec", dont_inherit=True), namespace)
    return load_models(namespace["MODELS"])


def dependents_first(schema: Schema) -> list[str]:
    """
    The tables of the schema in an order they can be dropped in: tables that reference
    others before the tables they reference.
    """
    from pywatt_twisted.data.models._ddl import creation_order

    return [m.name for m, _ in reversed(creation_order(schema.models))]
