# -*- test-case-name: tests.data.models.test_cli -*-
"""
C{pywatt db}: the schema tool (the cli layer: it loads a module definition through
L{pywatt_twisted._runtime}; the old path L{pywatt_twisted.data.models.cli} re-exports
it)::

    pywatt db model validate --models models.yaml
    pywatt db model generate --url URL [--table NAME ...] [--output models.py]
    pywatt db model drop     --models models.yaml --url URL [--yes]
    pywatt db schema generate --models models.yaml --dialect postgres [--output schema.sql]
    pywatt db schema diff  --models models.yaml --url URL [--check]
    pywatt db schema apply --models models.yaml --url URL [--allow-destructive]

C{--models} is a model file, a Python file (C{models.py}, its C{MODELS}, or
C{models.py:ATTR}), C{pkg.mod:attr} naming what a module passes as C{models=}
(attrs classes, a list, a L{Schema <pywatt_twisted.data.models.Schema>} or a dict), or
C{pkg.mod} whose C{@pywatt_module(models=...)} is used. C{--url} defaults to the
C{DATABASE_URL} environment variable. Exit status: 0 success,
1 a validation or database error (or, with C{diff --check}, pending changes), 2 bad usage.
Results go to stdout, errors and warnings to stderr; no message ever shows a password.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

from pywatt_twisted._cliparse import Parser
from pywatt_twisted.errors import ConfigurationError, PyWattError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(Parser):
    """
    An ArgumentParser that raises instead of exiting, so C{main} returns the status.
    """

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message, self.format_usage())


MODELS_HELP = (
    "a model file (.yaml, .yml or .json); or a Python file (models.py uses its MODELS, "
    "models.py:ATTR another name), such as model generate writes; or PKG.MOD:ATTR "
    "naming what a module passes as "
    "models= (attrs classes, a list of them, a Schema or a dict); or PKG.MOD, whose "
    "@pywatt_module(models=...) is used"
)

#: C{pkg.mod} or C{pkg.mod:attr}
_PYTHON_NAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*(:[A-Za-z_][\w.]*)?$")


def models_source(spec: str) -> Any:
    """
    What C{--models} names, ready for C{load_models}: a file path as it is; otherwise
    the Python object C{pkg.mod:attr} names (a module definition gives its C{models}), or
    the C{models} of the single C{@pywatt_module} in C{pkg.mod}. The current directory is
    importable, as with C{pywatt dev}.

    @raise ConfigurationError: the name cannot be imported, or names no models.
    """
    path, _, path_attr = spec.partition(":") if ".py:" in spec else (spec, "", "")
    if path.endswith(".py"):
        return _python_file_models(path, path_attr or "MODELS")
    if (
        os.path.exists(spec)
        or spec.endswith((".yaml", ".yml", ".json"))
        or not _PYTHON_NAME.match(spec)
    ):
        return spec
    from pywatt_twisted._runtime.loader import load_module_definition
    from pywatt_twisted._runtime.module import ModuleDefinition

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = spec.partition(":")
    if not attr:
        definition = load_module_definition(module_name)
        if definition.models is None:
            raise ConfigurationError(
                f"the module definition in {module_name!r} has no models=...; name the "
                "models with --models pkg.mod:attr, or give a model file"
            )
        return definition.models
    try:
        import importlib

        value: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigurationError(
            f"--models {spec}: cannot import {module_name!r} ({e}); is it on PYTHONPATH?"
        ) from None
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(f"--models {spec}: {module_name!r} has no {attr!r}") from None
    if isinstance(value, ModuleDefinition):
        if value.models is None:
            raise ConfigurationError(f"--models {spec}: this module definition has no models=...")
        return value.models
    return value


def _python_file_models(path: str, attr: str) -> Any:
    """
    The models a Python file defines (what C{model generate} writes): its C{attr}.
    """
    import importlib.util

    from pywatt_twisted._runtime.module import ModuleDefinition

    if not os.path.isfile(path):
        raise ConfigurationError(f"--models {path}: no such file")
    name = "pywatt_models_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that string annotations resolve
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigurationError(f"--models {path}: cannot run it: {e}") from None
    value = getattr(module, attr, None)
    if value is None:
        raise ConfigurationError(
            f"--models {path}: it defines no {attr}; name the models with {path}:ATTR"
        )
    if isinstance(value, ModuleDefinition):
        if value.models is None:
            raise ConfigurationError(f"--models {path}: this module definition has no models=...")
        return value.models
    return value


#: the help of --url
URL_HELP = (
    "database URL (default: $DATABASE_URL), e.g. postgresql://user@host/db, sqlite:///file.db"
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pywatt db",
        description="Validate models, generate their DDL and keep a database in step with them.",
        epilog="Exit status: 0 success, 1 validation or database error, 2 bad usage.",
    )
    groups = parser.add_subparsers(dest="group", metavar="{model,schema}", parser_class=_Parser)
    groups.required = True
    _add_model_commands(groups)
    _add_schema_commands(groups)
    return parser


def _add_model_commands(groups: Any) -> None:
    """
    C{pywatt db model validate|generate|drop}.
    """
    model = groups.add_parser(
        "model", help="validate models, generate them from a database, drop their tables"
    )
    model_commands = model.add_subparsers(
        dest="command", metavar="{validate,generate,drop}", parser_class=_Parser
    )
    model_commands.required = True
    validate = model_commands.add_parser(
        "validate", help="check a model file and print its problems"
    )
    validate.add_argument("--models", "-m", required=True, help=MODELS_HELP)
    model_generate = model_commands.add_parser(
        "generate",
        help="write Python models (@model attrs classes and MODELS) from a live database",
        description="Read the tables of a live database and write the Python models that "
        "describe them: one @model attrs class per table and a MODELS list, ready for "
        "@pywatt_module(models=MODELS) and --models FILE.py. Applying them to an empty "
        "database and running 'schema diff' against the source database shows no changes.",
    )
    model_generate.add_argument("--url", help=URL_HELP)
    model_generate.add_argument(
        "--table",
        "-t",
        action="append",
        metavar="NAME",
        help="a table to describe (repeatable; default: every table); the tables it "
        "references are included too",
    )
    model_generate.add_argument("--output", "-o", help="write to this file instead of stdout")
    model_drop = model_commands.add_parser(
        "drop",
        help="drop the models' tables (only those) from a database; needs --yes",
        description="Drop the tables of the models, dependents first, and nothing else. "
        "Without --yes it only lists what it would drop and exits with status 1.",
    )
    _add_models_and_url(model_drop)
    model_drop.add_argument(
        "--yes",
        action="store_true",
        help="really drop them (the data is lost); without it nothing is dropped",
    )


def _add_schema_commands(groups: Any) -> None:
    """
    C{pywatt db schema generate|diff|apply}.
    """
    schema = groups.add_parser("schema", help="generate DDL, compare with or apply to a database")
    schema_commands = schema.add_subparsers(
        dest="command", metavar="{generate,diff,apply}", parser_class=_Parser
    )
    schema_commands.required = True
    generate = schema_commands.add_parser("generate", help="print the DDL that creates the models")
    generate.add_argument("--models", "-m", required=True, help=MODELS_HELP)
    generate.add_argument(
        "--dialect",
        "-d",
        required=True,
        choices=["postgres", "postgresql", "mysql", "mariadb", "sqlite"],
        help="SQL dialect",
    )
    generate.add_argument("--output", "-o", help="write to this file instead of stdout")

    diff = schema_commands.add_parser("diff", help="show what apply would change; change nothing")
    _add_models_and_url(diff)
    diff.add_argument(
        "--check", action="store_true", help="exit with status 1 when there are changes (for CI)"
    )
    apply = schema_commands.add_parser("apply", help="bring the database in step with the models")
    _add_models_and_url(apply)
    apply.add_argument(
        "--allow-destructive",
        action="store_true",
        help="also apply changes that can lose data (dropping columns, narrowing types)",
    )


def _add_models_and_url(command: argparse.ArgumentParser) -> None:
    command.add_argument("--models", "-m", required=True, help=MODELS_HELP)
    command.add_argument("--url", help=URL_HELP)


def _err(message: str) -> None:
    sys.stderr.write(f"pywatt db: error: {message}\n")


def _warn(warnings: Sequence[Any]) -> None:
    for w in warnings:
        sys.stderr.write(f"pywatt db: warning: {w}\n")


def _load(path: str) -> Any:
    from pywatt_twisted.data.models import load_models, validate

    schema = load_models(models_source(path))
    _warn(validate(schema))
    return schema


def _cmd_validate(args: argparse.Namespace) -> int:
    schema = _load(args.models)
    n = len(schema.models)
    sys.stdout.write(f"{args.models}: {n} model{'s' if n != 1 else ''}, valid\n")
    return EXIT_OK


def _os_error(e: OSError) -> str:
    return f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")


def _output(path: str | None, text: str) -> None:
    """
    Write C{text} to the file at C{path}, or to stdout when C{path} is empty.
    """
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def _cmd_generate(args: argparse.Namespace) -> int:
    from pywatt_twisted.data.models import generate_ddl

    schema = _load(args.models)
    _output(args.output, generate_ddl(schema, args.dialect))
    return EXIT_OK


async def _with_database(reactor: Any, url: str, work: Callable[[Any], Awaitable[int]]) -> None:
    """
    Run C{work(db)} on the database at C{url} (one connection) and exit with the status
    it returns; a L{PyWattError} is reported and exits with C{EXIT_ERROR}. The database
    is closed either way.
    """
    from pywatt_twisted.data import Database

    db = Database.from_url(url, min_pool=1, max_pool=1, reactor=reactor)
    try:
        code = await work(db)
    except PyWattError as e:
        _err(str(e))
        code = EXIT_ERROR
    finally:
        await db.close()
    raise SystemExit(code)


async def _diff_or_apply(db: Any, args: argparse.Namespace, schema: Any) -> int:
    from pywatt_twisted.data.models import plan, sync

    if args.command == "diff":
        result = await plan(db, schema)
        sys.stdout.write(f"{result}\n")
        return EXIT_ERROR if args.check and not result.is_empty else EXIT_OK
    report = await sync(db, schema, allow_destructive=args.allow_destructive)
    sys.stdout.write(f"{report}\n")
    return EXIT_OK


def _cmd_live(args: argparse.Namespace) -> int:
    url = _given_url(args)
    schema = _load(args.models)
    _check_url(url)
    return _react(_with_database, url, lambda db: _diff_or_apply(db, args, schema))


def _given_url(args: argparse.Namespace) -> str:
    url: str | None = args.url or os.environ.get("DATABASE_URL")
    if not url:
        raise _UsageError("no database: pass --url URL or set DATABASE_URL", "")
    return url


def _check_url(url: str) -> None:
    # The URL is parsed before the reactor starts so a malformed one is a plain error.
    from pywatt_twisted.data._database import DatabaseConfig

    DatabaseConfig.from_url(url)


def _url(args: argparse.Namespace) -> str:
    url = _given_url(args)
    _check_url(url)
    return url


def _react(main: Any, *args: Any) -> int:
    from twisted.internet import task

    try:
        task.react(main, args)
    except SystemExit as e:
        return int(e.code or 0)
    return EXIT_OK  # pragma: no cover - react always exits


def generate_source(tx: Any, dialect: str, tables: Sequence[str]) -> tuple[str, list[Any]]:
    """
    The Python models of a database's tables, and the warnings (in a pool thread).
    """
    from pywatt_twisted.data.models._generate import (
        check_expressions,
        load_source,
        models_from_database,
        python_source,
    )
    from pywatt_twisted.data.models._introspect import introspect_transaction
    from pywatt_twisted.data.models._validate import validate

    generated = models_from_database(
        introspect_transaction(tx, dialect), tables, check_expressions(tx, dialect)
    )
    warnings = list(generated.warnings) + validate(generated.schema)
    source = python_source(generated.schema, f"a {dialect} database")
    if load_source(source) != generated.schema:  # pragma: no cover - a generator bug
        raise PyWattError("internal error: the generated source does not load back as read")
    return source, warnings


async def _model_generate(db: Any, args: argparse.Namespace) -> int:
    try:
        source, warnings = await db.run_interaction(
            generate_source, db.dialect, list(args.table or ())
        )
        _warn(warnings)
        _output(args.output, source)
    except OSError as e:
        _err(_os_error(e))
        return EXIT_ERROR
    return EXIT_OK


def _cmd_model_generate(args: argparse.Namespace) -> int:
    return _react(_with_database, _url(args), lambda db: _model_generate(db, args))


async def _model_drop(db: Any, args: argparse.Namespace, schema: Any) -> int:
    from pywatt_twisted.data.models._drop import drop

    result = await drop(db, schema, execute=args.yes)
    if args.yes:
        n = len(result.tables)
        sys.stdout.write(f"{result}\ndropped {n} table{'s' if n != 1 else ''}\n")
        return EXIT_OK
    sys.stdout.write(f"would drop, dependents first:\n{result}\n")
    if result.tables:
        _err("nothing was dropped: pass --yes to drop these tables and their data")
        return EXIT_ERROR
    return EXIT_OK


def _cmd_model_drop(args: argparse.Namespace) -> int:
    url = _url(args)
    schema = _load(args.models)
    return _react(_with_database, url, lambda db: _model_drop(db, args, schema))


COMMANDS = {
    ("model", "validate"): _cmd_validate,
    ("model", "generate"): _cmd_model_generate,
    ("model", "drop"): _cmd_model_drop,
    ("schema", "generate"): _cmd_generate,
    ("schema", "diff"): _cmd_live,
    ("schema", "apply"): _cmd_live,
}


def main(argv: Sequence[str]) -> int:
    """
    Run C{pywatt db} with the arguments that follow C{db}.

    @return: the exit status (0 success, 1 validation or database error, 2 bad usage).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except _UsageError as e:
        sys.stderr.write(f"{e.usage}pywatt db: error: {e}\n")
        return EXIT_USAGE
    except SystemExit as e:  # --help
        return int(e.code or 0)
    try:
        return COMMANDS[(args.group, args.command)](args)
    except _UsageError as e:
        sys.stderr.write(f"{e.usage}pywatt db: error: {e}\n")
        return EXIT_USAGE
    except PyWattError as e:
        _err(str(e))
        return EXIT_ERROR
    except OSError as e:
        _err(_os_error(e))
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
