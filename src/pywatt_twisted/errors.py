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
    A stdio line exceeded the maximum line length (1 MiB by default).
    """


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
    A peer answered a request with an error.

    @ivar kind: the error kind the peer reported.
    """

    def __init__(self, message: str, kind: str = "remote_error") -> None:
        super().__init__(message)
        self.kind = kind


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
