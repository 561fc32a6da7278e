# -*- test-case-name: tests.runtime.test_messaging -*-
"""
The envelopes and error replies of module-to-module messaging, shared by the caller
side (L{pywatt_twisted._runtime.routed_requests}) and the handler side
(L{pywatt_twisted._runtime.routed_handlers}); the encoding itself lives in
L{pywatt_twisted.wire.envelope}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pywatt_twisted.wire.envelope import (
    routed_reply_content,
    routed_request_payload,
    unwrap_routed_request,
)
from pywatt_twisted.wire.messages import EncodedPayload, RoutedModuleMessage, RoutedModuleReply

__all__ = [
    "RoutedHandler",
    "decode_reply",
    "error_payload",
    "error_reply",
    "request_payload",
    "unwrap_request",
]

#: A routed handler: C{handler(source_module_id, content)}.
RoutedHandler = Callable[[str, Any], Any]


def error_payload(kind: str, message: str) -> EncodedPayload:
    """
    The payload of an error reply: C{{"error": {"kind": kind, "message": message}}}.
    """
    return EncodedPayload.from_json({"error": {"kind": kind, "message": message}})


def error_reply(
    module_id: str, message: RoutedModuleMessage, kind: str, text: str
) -> RoutedModuleReply:
    """
    The error reply of module C{module_id} to C{message}.
    """
    return RoutedModuleReply(
        source_module_id=module_id,
        request_id=message.original_request_id,
        target_module_id=message.source_module_id,
        payload=error_payload(kind, text),
    )


#: The payload of a routed request (see L{routed_request_payload}; tests use it to play a
#: requester).
request_payload = routed_request_payload


#: The content of a C{routed_module_response} payload (see L{routed_reply_content}).
decode_reply = routed_reply_content

#: The C{(content, endpoint, no_reply)} of a routed request (see L{unwrap_routed_request}).
unwrap_request = unwrap_routed_request
