# -*- test-case-name: tests.runtime.test_secrets -*-
"""
L{SecretRotation}: a C{rotated} message from the orchestrator, answered with one
C{rotation_ack}: re-fetch the rotated secrets the module uses, move the C{database=}
database to its new URL, run the C{on_rotation} callbacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import ensureDeferred

from pywatt_twisted import tracing
from pywatt_twisted._runtime.bootstrap import resolve
from pywatt_twisted._transport.interfaces import IOrchestratorLink
from pywatt_twisted.wire.messages import Rotated, RotationAck

if TYPE_CHECKING:
    from pywatt_twisted._runtime.service import ModuleService

__all__ = ["SecretRotation"]


class SecretRotation:
    """
    Rotations for one module service (its secrets, database, callbacks and log).
    """

    def __init__(self, service: ModuleService) -> None:
        self.service = service
        self.parts = service.parts
        self.log = service.log

    def received(self, message: Rotated, link: IOrchestratorLink) -> None:
        """
        Rotate, then acknowledge on C{link}.
        """
        span = None
        if tracing.switch.on:
            # tracing: the rotation's span is current for the whole coroutine (re-fetches
            # and callbacks are its children)
            span = tracing.internal_span(
                "secret_rotation",
                **{
                    "pywatt.rotation.id": message.rotation_id,
                    "pywatt.rotation.keys": len(message.keys),
                },
            )
            token = tracing.attach(span)
        try:
            d = ensureDeferred(self._rotate(message, link))
        finally:
            if span is not None:
                tracing.detach(token)
        tracing.traced(span, d).addErrback(
            lambda f: self.log.failure("rotation {id} failed", f, id=message.rotation_id)
        )

    async def _rotate(self, message: Rotated, link: IOrchestratorLink) -> None:
        secrets = self.parts.secrets
        assert secrets is not None
        if not self.service.definition.rotate:
            self.log.info(
                "rotation {id} ignored: this module was declared with rotate=False",
                id=message.rotation_id,
            )
            link.send(RotationAck(rotation_id=message.rotation_id, status="success"))
            return
        used = [k for k in message.keys if k in secrets.known()]
        try:
            await secrets.refresh(used)
        except Exception as e:
            link.send(
                RotationAck(
                    rotation_id=message.rotation_id,
                    status="error",
                    message=f"re-fetching {', '.join(used)} failed: {e}",
                )
            )
            return
        problems = []
        database_secret = self.service.definition.database
        if database_secret in used and self.parts.database is not None:
            problem = await self._rotate_database(database_secret)
            if problem is not None:
                problems.append(problem)
        failed = await self._run_callbacks(used)
        if failed:
            problems.append(f"on_rotation callback(s) failed: {', '.join(failed)}")
        if problems:
            link.send(
                RotationAck(
                    rotation_id=message.rotation_id,
                    status="error",
                    message="; ".join(problems),
                )
            )
        else:
            link.send(RotationAck(rotation_id=message.rotation_id, status="success"))

    async def _run_callbacks(self, used: list[str]) -> list[str]:
        """
        Run the C{on_rotation} callbacks with the rotated names; return the names of
        those that failed (each failure logged).
        """
        failed = []
        state = self.parts.state
        if state is not None:
            for callback in state.rotation_callbacks:
                try:
                    await resolve(callback(tuple(used)))
                except Exception:
                    self.log.failure(
                        "on_rotation callback {cb} failed", cb=getattr(callback, "__name__", "?")
                    )
                    failed.append(getattr(callback, "__qualname__", repr(callback)))
        return failed

    async def _rotate_database(self, secret_name: str) -> str | None:
        """
        Move the C{database=} database to the rotated URL (see L{Database.use_url
        <pywatt_twisted.data.Database.use_url>}); return None, or why it still uses the
        old one (no password in it).
        """
        assert self.parts.secrets is not None
        try:
            await self.parts.database.use_url(self.parts.secrets.cached(secret_name))
        except Exception as e:
            reason = self.service.redactor.redact(
                f"the database in secret {secret_name!r} still uses its old value: {e}"
            )
            self.log.error("rotation: {reason}", reason=reason)
            return reason
        return None
