"""
Bring a database in step with the notes module's models, the way the bootstrap does at
start-up, using the public API::

    python -m examples.models_module.sync_schema sqlite:///notes.db [--allow-destructive]

Prints the report and exits 0, or prints the problem (for example the destructive changes
it refused) and exits 1.
"""

from __future__ import annotations

import sys

from twisted.internet import task

from examples.models_module.models import MODELS
from pywatt_twisted.data import Database
from pywatt_twisted.data.models import load_models, sync
from pywatt_twisted.errors import PyWattError


async def main(reactor, url: str, *flags: str) -> None:
    db = Database.from_url(url, reactor=reactor)
    try:
        report = await sync(
            db, load_models(MODELS), allow_destructive="--allow-destructive" in flags
        )
        print(report)
    except PyWattError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1)
    finally:
        await db.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    task.react(main, sys.argv[1:])
