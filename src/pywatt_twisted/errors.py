# -*- test-case-name: tests.wire.test_framing -*-
"""
The exception hierarchy of pywatt_twisted.

Every error the library raises on purpose derives from L{PyWattError}. Messages say what
was expected, what came, and what to do about it; none of them ever includes a secret
value or a password.
"""

from __future__ import annotations


class PyWattError(Exception):
    """
    Root of every error raised by pywatt_twisted.
    """


class ProtocolError(PyWattError):
    """
    Input that crossed the wire (a line, a frame, a JSON document) is not a valid PyWatt
    message.

    @ivar field: dotted path of the offending field (C{"tcp_channel.address"}), or
        C{None} when the problem is not tied to one field.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        if field is not None:
            message = f"{field}: {message}"
        super().__init__(message)
        self.field = field


class FrameError(ProtocolError):
    """
    A channel frame is unusable (see L{FrameTooLarge} and L{UnsupportedFrameFormat}).
    """


class FrameTooLarge(FrameError):
    """
    A frame header announced, or an outgoing message needed, more bytes than the
    configured maximum frame length. On receive, the connection must be aborted: the
    stream cannot be trusted past such a header.

    @ivar length: the length that was announced or needed.
    @ivar limit: the configured maximum.
    """

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(
            f"frame of {length} bytes exceeds the maximum frame length of {limit} bytes"
        )
        self.length = length
        self.limit = limit


class UnsupportedFrameFormat(FrameError):
    """
    A frame carried a format byte this implementation cannot turn into JSON. The frame is
    skipped (its length is known, so the stream stays in sync).
    """


class LineTooLong(ProtocolError):
    """
    A stdio line exceeded the maximum line length (1 MiB for the init line, the frame
    cap for later lines by default).

    @ivar head: the first bytes of the discarded line (at most
        L{pywatt_twisted.wire.lines.HEAD_BYTES}), so the reader can still answer an
        over-long request by its id; empty when not known.
    @ivar limit: the cap the line exceeded, in bytes (C{0} when not known).
    """

    def __init__(self, message: str, *, head: bytes = b"", limit: int = 0) -> None:
        super().__init__(message)
        self.head = head
        self.limit = limit


class ConfigurationError(PyWattError):
    """
    The module, its options or its environment are configured wrongly.
    """


class ModuleLoadError(ConfigurationError):
    """
    C{--module} could not be imported, or it holds no (or several) module definitions.
    """


class BootstrapError(PyWattError):
    """
    The module could not complete its start-up (init, secrets, channels, bind, announce).
    """


class RequestTimeout(PyWattError):
    """
    A request that waits for a reply from the orchestrator or a peer got none in time.
    """


class SecretError(PyWattError):
    """
    A secret could not be fetched, parsed or converted. Never includes the value.
    """


class PayloadError(PyWattError, ValueError):
    """
    A payload to send cannot be encoded as JSON (the message was not sent).
    """


class ChannelError(PyWattError):
    """
    A framed channel could not carry a message (down, queue full, TLS failure...).
    """


class MessageTooLarge(FrameTooLarge, ChannelError):
    """
    An outgoing message does not fit in one frame. Nothing was sent.

    @ivar op: the op of the message.
    """

    def __init__(self, op: str, length: int, limit: int) -> None:
        super().__init__(length, limit)
        self.op = op
        self.args = (
            f"cannot send {op}: its frame of {length} bytes exceeds the maximum frame "
            f"length of {limit} bytes; send less data per message, or raise the limit "
            "(PYWATT_MAX_FRAME_LENGTH / --max-frame-length) on both sides",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class RemoteError(PyWattError):
    """
    A peer answered a request with an error, or a module-to-module request failed
    locally in a way the caller handles like one (C{timeout}, C{circuit_open}).

    Each kind of EXTENSIONS.md X4 has its own subclass (L{NoHandler}, L{BadRequest},
    L{BadReply}, L{HandlerError}, L{DeadlineExceeded}, L{Overloaded}, L{Unavailable},
    L{UnknownModule}, L{TargetExited}, L{Timeout}, L{CircuitOpen});
    L{RemoteError.from_kind} builds the right one. A kind of the handler's own choosing
    (C{"out_of_stock"}) stays a plain C{RemoteError} carrying that kind.

    @ivar kind: the error kind the peer reported.
    """

    #: the kind a subclass stands for (C{None} on C{RemoteError} itself)
    default_kind: str | None = None

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is None:
            kind = self.default_kind or "remote_error"
        self.kind = kind

    @staticmethod
    def from_kind(kind: str, message: str) -> RemoteError:
        """
        The exception for an error reply of C{kind}: the subclass registered for it in
        L{REMOTE_ERROR_CLASSES}, else a plain L{RemoteError} carrying C{kind}.
        """
        cls = REMOTE_ERROR_CLASSES.get(kind, RemoteError)
        return cls(message, kind=kind)


class NoHandler(RemoteError):
    """
    C{unknown_endpoint}: the target module has no handler for the endpoint named.
    """

    default_kind = "unknown_endpoint"


#: The same class under the name of its wire kind.
UnknownEndpoint = NoHandler


class BadRequest(RemoteError):
    """
    C{bad_request}: the target could not read the request payload.
    """

    default_kind = "bad_request"


class BadReply(RemoteError):
    """
    C{bad_reply}: the target's handler returned something that is not JSON.
    """

    default_kind = "bad_reply"


class HandlerError(RemoteError):
    """
    C{handler_error}: the target's handler raised an unexpected exception. The message
    is redacted and carries no traceback (the target logged it).
    """

    default_kind = "handler_error"


class DeadlineExceeded(RemoteError):
    """
    C{deadline_exceeded}: the target refused work whose deadline had passed, or
    cancelled its handler at the deadline (or at the handler's own timeout).
    """

    default_kind = "deadline_exceeded"


class Overloaded(RemoteError):
    """
    C{overloaded}: the target's handler queue is full; the request was not run.
    """

    default_kind = "overloaded"


class Unavailable(RemoteError):
    """
    C{unavailable}: the target is stopping (from the target), or has no channel (from
    the orchestrator).
    """

    default_kind = "unavailable"


class UnknownModule(RemoteError):
    """
    C{unknown_module}: the orchestrator knows no module of that id.
    """

    default_kind = "unknown_module"


class TargetExited(RemoteError):
    """
    C{target_exited}: the target module exited before it replied.
    """

    default_kind = "target_exited"


class Timeout(RemoteError, RequestTimeout):
    """
    C{timeout} (raised locally): no reply came before the request's deadline. Also a
    L{RequestTimeout}, so code written for the plain timeout still catches it.
    """

    default_kind = "timeout"


class CircuitOpen(RemoteError):
    """
    C{circuit_open} (raised locally): the circuit breaker of the target is open, so the
    request was not sent. It fails at once instead of waiting for a target that has
    been failing.

    @ivar target: the target (module id or service name) whose breaker is open.
    @ivar retry_after: seconds until the breaker lets a probe through, or C{None}.
    """

    default_kind = "circuit_open"

    def __init__(
        self,
        message: str,
        kind: str | None = None,
        target: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, kind)
        self.target = target
        self.retry_after = retry_after


#: The exception class of each X4 error kind (L{RemoteError.from_kind}).
REMOTE_ERROR_CLASSES: dict[str, type[RemoteError]] = {
    cls.default_kind: cls
    for cls in (
        NoHandler,
        BadRequest,
        BadReply,
        HandlerError,
        DeadlineExceeded,
        Overloaded,
        Unavailable,
        UnknownModule,
        TargetExited,
        Timeout,
        CircuitOpen,
    )
    if cls.default_kind is not None
}


class ServiceError(RemoteError):
    """
    A proxied service (C{state.service(name)}) could not be used: the orchestrator
    refused the connection or an operation for a reason that is not the backend's own
    error (those arrive as the data layer's usual types, such as C{QueryError}).

    @ivar info: the orchestrator's C{error_info} object, when it sent one.
    @ivar detail: the orchestrator's own error text (C{message} when it gave none).
    """

    def __init__(
        self,
        message: str,
        kind: str = "service_error",
        info: object = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, kind)
        self.info = info
        self.detail = message if detail is None else detail


class UnknownService(ServiceError):
    """
    The orchestrator provides no service of that name (C{kind} C{"unknown_service"});
    the message lists the names it does provide.
    """

    def __init__(
        self,
        message: str,
        kind: str = "unknown_service",
        info: object = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, kind, info, detail)


class UnsupportedOperation(ServiceError):
    """
    The orchestrator's end of a proxied service does not support that operation
    (C{kind} C{"unsupported_operation"}).
    """

    def __init__(
        self,
        message: str,
        kind: str = "unsupported_operation",
        info: object = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, kind, info, detail)


class ServiceUnavailable(ServiceError):
    """
    A proxied service operation got no answer: the orchestrator did not reply in time,
    the module is stopping, too many operations were waiting, or the service's breaker
    is open (C{kind} C{"unavailable"}, C{"overloaded"}, C{"timeout"}...).

    @ivar sent: whether the operation may have reached the orchestrator; if so its
        outcome is unknown (it may have been applied), and it is never sent again on its
        own.
    """

    def __init__(
        self, message: str, kind: str = "unavailable", info: object = None, *, sent: bool = False
    ) -> None:
        super().__init__(message, kind, info)
        self.sent = sent


class DataError(PyWattError):
    """
    A database or cache operation failed. Never includes a password.
    """


class BackendUnavailable(DataError):
    """
    A backend the module depends on (a database, a cache server) cannot be reached, or
    stopped answering in time. The library's own types for it (C{DatabaseUnavailable},
    C{CacheUnavailable}) derive from this class; an HTTP route that lets one escape is
    answered C{503 Service Unavailable} with a JSON body instead of a 500.

    @ivar backend: what was unavailable, for the 503 body (C{"database"},
        C{"cache"}).
    """

    backend = "backend"


class RouteReturnError(PyWattError, TypeError):
    """
    An HTTP route (or a Klein error handler) returned a value that cannot be sent as a
    response: a type Klein does not send (an C{int}, a C{set}, a C{tuple}, an object), or
    a C{dict}/C{list} holding something JSON cannot represent. The request is answered
    C{500} with a JSON body and the module logs one ERROR line with the same message.

    @ivar route: the route, as C{"GET /items/<int:item_id> (get_item)"}.
    @ivar type_name: the type that could not be sent.
    """

    def __init__(self, message: str, route: str, type_name: str) -> None:
        super().__init__(message)
        self.route = route
        self.type_name = type_name


class NotAvailable(PyWattError):
    """
    A feature was used that this module was not configured for (for example module-to-
    module messaging without a channel).
    """
