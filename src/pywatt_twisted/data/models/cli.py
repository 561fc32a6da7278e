# -*- test-case-name: tests.data.models.test_cli -*-
"""
C{pywatt db}: the schema tool::

    pywatt db model validate --models models.yaml
    pywatt db schema generate --models models.yaml --dialect postgres [--output schema.sql]
    pywatt db schema diff  --models models.yaml --url URL [--check]
    pywatt db schema apply --models models.yaml --url URL [--allow-destructive]

C{--models} is a model file, C{pkg.mod:attr} naming what a module passes as C{models=}
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
from collections.abc import Sequence
from typing import Any, NoReturn

from pywatt_twisted.cliparse import Parser
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
    "a model file (.yaml, .yml or .json); or PKG.MOD:ATTR naming what a module passes as "
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
    if (
        os.path.exists(spec)
        or spec.endswith((".yaml", ".yml", ".json"))
        or not _PYTHON_NAME.match(spec)
    ):
        return spec
    from pywatt_twisted.runtime.loader import load_module_definition
    from pywatt_twisted.runtime.module import ModuleDefinition

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pywatt db",
        description="Validate models, generate their DDL and keep a database in step with them.",
        epilog="Exit status: 0 success, 1 validation or database error, 2 bad usage.",
    )
    groups = parser.add_subparsers(dest="group", metavar="{model,schema}", parser_class=_Parser)
    groups.required = True

    model = groups.add_parser("model", help="work with model files")
    model_commands = model.add_subparsers(
        dest="command", metavar="{validate}", parser_class=_Parser
    )
    model_commands.required = True
    validate = model_commands.add_parser(
        "validate", help="check a model file and print its problems"
    )
    validate.add_argument("--models", "-m", required=True, help=MODELS_HELP)

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

    url_help = (
        "database URL (default: $DATABASE_URL), e.g. postgresql://user@host/db, sqlite:///file.db"
    )
    diff = schema_commands.add_parser("diff", help="show what apply would change; change nothing")
    diff.add_argument("--models", "-m", required=True, help=MODELS_HELP)
    diff.add_argument("--url", help=url_help)
    diff.add_argument(
        "--check", action="store_true", help="exit with status 1 when there are changes (for CI)"
    )
    apply = schema_commands.add_parser("apply", help="bring the database in step with the models")
    apply.add_argument("--models", "-m", required=True, help=MODELS_HELP)
    apply.add_argument("--url", help=url_help)
    apply.add_argument(
        "--allow-destructive",
        action="store_true",
        help="also apply changes that can lose data (dropping columns, narrowing types)",
    )
    return parser


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


def _cmd_generate(args: argparse.Namespace) -> int:
    from pywatt_twisted.data.models import generate_ddl

    schema = _load(args.models)
    ddl = generate_ddl(schema, args.dialect)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(ddl)
    else:
        sys.stdout.write(ddl)
    return EXIT_OK


async def _live(reactor: Any, args: argparse.Namespace, schema: Any, url: str) -> None:
    from pywatt_twisted.data import Database
    from pywatt_twisted.data.models import plan, sync

    db = Database.from_url(url, min_pool=1, max_pool=1, reactor=reactor)
    code = EXIT_OK
    try:
        if args.command == "diff":
            result = await plan(db, schema)
            sys.stdout.write(f"{result}\n")
            if args.check and not result.is_empty:
                code = EXIT_ERROR
        else:
            report = await sync(db, schema, allow_destructive=args.allow_destructive)
            sys.stdout.write(f"{report}\n")
    except PyWattError as e:
        _err(str(e))
        code = EXIT_ERROR
    finally:
        await db.close()
    raise SystemExit(code)


def _cmd_live(args: argparse.Namespace) -> int:
    from twisted.internet import task

    url = args.url or os.environ.get("DATABASE_URL")
    if not url:
        raise _UsageError("no database: pass --url URL or set DATABASE_URL", "")
    schema = _load(args.models)
    # The URL is parsed before the reactor starts so a malformed one is a plain error.
    from pywatt_twisted.data.database import DatabaseConfig

    DatabaseConfig.from_url(url)
    try:
        task.react(_live, [args, schema, url])
    except SystemExit as e:
        return int(e.code or 0)
    return EXIT_OK  # pragma: no cover - react always exits


COMMANDS = {
    ("model", "validate"): _cmd_validate,
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
        _err(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "))
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
