"""
The wire layer on its own: what crosses stdin/stdout and the framed channels, as plain
values. No reactor, no sockets.

Run: ``.venv/bin/python -m examples.wire_tour``

The runtime does all of this for you; use these pieces directly when you write tools,
test fakes or an orchestrator of your own (``docs/protocol.md``).
"""

from __future__ import annotations

import uuid

from pywatt_twisted.errors import FrameError, ProtocolError
from pywatt_twisted.wire.codec import (
    decode_envelope_from_module,
    decode_from_orchestrator,
    decode_init,
    encode_envelope,
    encode_line,
    encode_stdout_http_response,
)
from pywatt_twisted.wire.framing import Frame, FrameDecoder, encode_frame, frame_json
from pywatt_twisted.wire.init import listen_warning
from pywatt_twisted.wire.lines import LineDecoder
from pywatt_twisted.wire.messages import (
    Announce,
    Endpoint,
    GetSecret,
    HeartbeatAck,
    HttpRequest,
    HttpResponse,
    Identify,
    Metadata,
    SecretMessage,
    UnknownMessage,
)

STDIN = (
    # The init line: here in the Python SDK's shape ({host, port}), which is accepted.
    b'{"orchestrator_api":"http://127.0.0.1:9900","module_id":"demo","env":{},'
    b'"listen":"127.0.0.1:4102","tcp_channel":{"host":"127.0.0.1","port":9901}}\r\n'
    b'{"op":"secret","name":"API_KEY","value":"k1"}\n'
    b"\n"  # blank lines are skipped
    b'{"op":"http_request","request_id":"req-1","method":"GET","uri":"/health",'
    b'"headers":{},"body":null}\n'
    b'{"op":"something_new","x":1}\n'
)


def stdio() -> None:
    print("== stdin, delivered in 7-byte reads ==")
    lines = LineDecoder()
    received: list[bytes] = []
    for i in range(0, len(STDIN), 7):
        for item in lines.feed(STDIN[i : i + 7]):
            assert isinstance(item, bytes)
            received.append(item)

    init = decode_init(received[0])
    print("init:", init.module_id, "listen", init.listen, "tcp channel", init.tcp_channel)
    print("listen warning:", listen_warning(init.listen))
    for line in received[1:]:
        message = decode_from_orchestrator(line)
        if isinstance(message, SecretMessage):
            print("secret:", message)  # the value is kept out of the repr
        elif isinstance(message, HttpRequest):
            print("http_request:", message.method, message.uri)
            reply = HttpResponse(message.request_id, 200, {"content-type": "text/plain"}, b"ok")
            out = encode_stdout_http_response(reply, source=init.module_id) + b"\n"
            print("  stdout reply:", out.decode().strip())
        elif isinstance(message, UnknownMessage):
            print("unknown op, ignored:", message.op)

    print("== stdout lines ==")
    for message in (
        GetSecret("API_KEY"),
        Announce("127.0.0.1:4102", [Endpoint("/health", ["GET"])]),
        HeartbeatAck(),
    ):
        print(encode_line(message).decode(), end="")


def channel() -> None:
    print("== channel frames ==")
    identify = encode_envelope(
        Identify("demo"), id=uuid.UUID(int=1), metadata=Metadata(source="demo")
    )
    frame = encode_frame(identify)
    print("identify frame:", frame[:5].hex(), frame[5:].decode())

    decoder = FrameDecoder(max_frame_length=1024)
    stream = encode_frame(b'{"op":"heartbeat"}') + b"\x00\x00\x10\x00\x01"  # 4 KiB > cap
    for item in decoder.feed(stream):
        if isinstance(item, Frame):
            print("frame ->", decode_from_orchestrator(frame_json(item)))
        elif isinstance(item, FrameError):
            print("frame error:", item, "| failed:", decoder.failed)

    envelope = decode_envelope_from_module(identify)
    print("orchestrator side reads:", envelope.content, "from", envelope.metadata.source)


def errors() -> None:
    print("== clear errors ==")
    for bad in (
        b'{"op":"http_request","request_id":"r","method":"GET","uri":"/","headers":[]}',
        b'{"orchestrator_api":"x","module_id":"m","tcp_channel":{"address":"nowhere"}}',
    ):
        try:
            decode_init(bad) if b"orchestrator_api" in bad else decode_from_orchestrator(bad)
        except ProtocolError as e:
            print(f"ProtocolError(field={e.field!r}): {e}")


def main() -> None:
    stdio()
    channel()
    errors()


if __name__ == "__main__":
    main()
