# -*- test-case-name: tests.data.models.test_cli -*-
"""
The old path of C{pywatt db}, kept so that imports of it keep working: the command
now lives in the cli layer, L{pywatt_twisted._dbcli} (it loads a module definition
through L{pywatt_twisted._runtime}, which the data layer must not import). Code in
the package imports L{pywatt_twisted._dbcli}.
"""

from __future__ import annotations

import sys
import warnings

from pywatt_twisted._dbcli import (
    COMMANDS,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    MODELS_HELP,
    build_parser,
    generate_source,
    main,
    models_source,
)

__all__ = [
    "COMMANDS",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "MODELS_HELP",
    "build_parser",
    "generate_source",
    "main",
    "models_source",
]

warnings.warn(
    "pywatt_twisted.data.models.cli is deprecated: run 'pywatt db' instead",
    DeprecationWarning,
    stacklevel=2,
)

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
