"""
Tests for the typed errors of module-to-module calls (EXTENSIONS.md X4) in
L{pywatt_twisted.errors}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import errors
from pywatt_twisted.errors import REMOTE_ERROR_CLASSES, RemoteError, RequestTimeout

#: every kind X4 names, and the class a requester surfaces it as
X4_KINDS = {
    "unknown_endpoint": errors.NoHandler,
    "bad_request": errors.BadRequest,
    "bad_reply": errors.BadReply,
    "handler_error": errors.HandlerError,
    "deadline_exceeded": errors.DeadlineExceeded,
    "overloaded": errors.Overloaded,
    "unavailable": errors.Unavailable,
    "unknown_module": errors.UnknownModule,
    "target_exited": errors.TargetExited,
    "timeout": errors.Timeout,
    "circuit_open": errors.CircuitOpen,
}


class TypedRemoteErrorTests(SynchronousTestCase):
    def test_every_x4_kind_has_its_own_class(self) -> None:
        self.assertEqual(REMOTE_ERROR_CLASSES, X4_KINDS)
        self.assertEqual(len(set(X4_KINDS.values())), len(X4_KINDS))

    def test_from_kind_keeps_kind_and_message(self) -> None:
        for kind, cls in X4_KINDS.items():
            error = RemoteError.from_kind(kind, "text")
            self.assertIs(type(error), cls)
            self.assertIsInstance(error, RemoteError)
            self.assertEqual((error.kind, str(error)), (kind, "text"))

    def test_a_kind_of_the_handlers_own_stays_remote_error(self) -> None:
        error = RemoteError.from_kind("out_of_stock", "none left")
        self.assertIs(type(error), RemoteError)
        self.assertEqual(error.kind, "out_of_stock")

    def test_default_kinds(self) -> None:
        self.assertEqual(errors.HandlerError("x").kind, "handler_error")
        self.assertEqual(RemoteError("x").kind, "remote_error")
        self.assertEqual(RemoteError("x", kind="k").kind, "k")

    def test_timeout_is_also_a_request_timeout(self) -> None:
        self.assertIsInstance(errors.Timeout("late"), RequestTimeout)

    def test_unknown_endpoint_alias(self) -> None:
        self.assertIs(errors.UnknownEndpoint, errors.NoHandler)

    def test_circuit_open_carries_target_and_retry_after(self) -> None:
        error = errors.CircuitOpen("open", target="inventory", retry_after=2.5)
        self.assertEqual(
            (error.kind, error.target, error.retry_after), ("circuit_open", "inventory", 2.5)
        )
