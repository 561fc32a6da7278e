# -*- test-case-name: tests.wire.test_routed_fast_paths -*-
"""
The C{routed_module_message} every peer sends, read at once (issue 17): a module that
answers other modules decodes one per request, and its general readers (C{_str},
C{_uuid}, C{_payload}, C{_opt_str} and the attrs C{__init__}) cost about as much as the
rest of the decode. L{with_fast_path} wraps the general decoder: the common shape is
read inline, anything else (or any check that fails) goes to the general decoder, which
gives the value or names the field at fault.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Final

from pywatt_twisted.wire._value import unfrozen
from pywatt_twisted.wire.messages import EncodedPayload, RoutedModuleMessage

__all__ = ["id_and_json_payload", "with_fast_path"]

_UUID: Final = uuid.UUID
_SAFE_UNKNOWN: Final = uuid.SafeUUID.unknown
# The values are built as unfrozen twins whose class is then switched
# (wire._value.unfrozen), as the codec's hot decoders build theirs: the same objects
# the constructors make (they have no validator or converter to skip).
_UnfrozenUUID: Final = unfrozen(_UUID)
_UnfrozenPayload: Final = unfrozen(EncodedPayload)
_UnfrozenMessage: Final = unfrozen(RoutedModuleMessage)

_Decoder = Callable[[Any, str], Any]


def id_and_json_payload(digits: str, data: list[Any]) -> tuple[uuid.UUID, EncodedPayload] | None:
    """
    The request id whose 32 hex C{digits} are given and the C{"Json"} payload of the
    byte values C{data}, as C{_uuid} and C{_payload} read them from a well-formed
    message: the C{routed_module_message} here and the codec's
    C{routed_module_response} share it. C{None} if the digits are not hex or a value
    is not a byte: the general reader then names the field at fault.
    """
    try:
        number = int(digits, 16)
        # bytearray() reads a list of ints at about half the cost of bytes() (one index
        # conversion per int instead of three calls: 222 bytes, 17.4 k -> 9.2 k
        # instructions); the copy to bytes is one memcpy
        raw = bytes(bytearray(data))
    except (ValueError, TypeError):
        return None
    request_id = _UnfrozenUUID()
    request_id.int = number
    request_id.is_safe = _SAFE_UNKNOWN
    request_id.__class__ = _UUID
    payload = _UnfrozenPayload()
    payload.data = raw
    payload.format = "Json"
    payload.__class__ = EncodedPayload
    return request_id, payload


def with_fast_path(general: _Decoder) -> _Decoder:
    """
    The decoder of C{routed_module_message} objects: C{general(obj, ctx)}'s value for
    every C{obj}, read inline when it has the shape peers write (a string source, a
    canonical request id, a C{"Json"} payload given as an array of integers, an
    endpoint that is a string or absent).
    """

    def decode(obj: Any, ctx: str) -> Any:
        source = obj.get("source_module_id")
        value = obj.get("original_request_id")
        body = obj.get("payload")
        endpoint = obj.get("target_endpoint")
        if (
            type(source) is str
            and type(value) is str
            and len(value) == 36
            and type(body) is dict
            and (endpoint is None or type(endpoint) is str)
        ):
            # (Where the four hyphens are is not checked, as the codec's reader of
            # routed_module_response does not: 36 characters of which four are hyphens
            # and the rest hex is read by uuid.UUID, the general reader's fallback, as
            # the same number wherever the hyphens are; 1.5 k instructions per message.)
            digits = value.replace("-", "")
            data = body.get("data")
            fmt = body.get("format", "Json")
            if len(digits) == 32 and type(data) is list and type(fmt) is str and fmt == "Json":
                read = id_and_json_payload(digits, data)
                if read is not None:
                    message = _UnfrozenMessage()
                    message.source_module_id = source
                    message.original_request_id, message.payload = read
                    message.target_endpoint = endpoint
                    message.__class__ = RoutedModuleMessage
                    return message
        return general(obj, ctx)

    return decode
