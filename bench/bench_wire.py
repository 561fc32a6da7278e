"""
Wire-layer benchmark: frame decoding/encoding and the JSON codec.

Run: C{.venv/bin/python -m bench wire} (add C{--quick} for fewer iterations).

Frames: our L{FrameDecoder} against Twisted's C{Int32StringReceiver} (its C{MAX_LENGTH}
raised) parsing the same stream, fed in the same 64 KiB reads a socket would give. The
baseline's stream carries the format byte as the first payload byte (length + 1), so
both parse the same number of bytes. Encoding: L{encode_frame} against
C{Int32StringReceiver.sendString} into a list-backed transport.

Codec: encode and decode of typical messages with the default backend (orjson) against
the same codec running on the standard library's C{json}.

Targets (issue 2): small frames within 1.5x of the baseline's cost; 16 MiB frames at
least 3x faster than the baseline and within 2x of our own 1 MiB MB/s.
"""

from __future__ import annotations

import gc
import struct
import time
import uuid
from collections.abc import Callable

from twisted.protocols.basic import Int32StringReceiver

from bench.record import row
from pywatt_twisted.wire import _json
from pywatt_twisted.wire.codec import (
    decode_from_module,
    decode_from_orchestrator,
    encode,
    encode_envelope,
)
from pywatt_twisted.wire.framing import FrameDecoder, encode_frame
from pywatt_twisted.wire.messages import (
    EncodedPayload,
    HeartbeatAck,
    HttpRequest,
    HttpResponse,
    RouteToModule,
    SecretMessage,
)

READ_SIZE = 64 * 1024
MiB = 1024 * 1024


class _Baseline(Int32StringReceiver):
    MAX_LENGTH = 64 * MiB

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def stringReceived(self, string: bytes) -> None:
        self.received.append(string)


class _ListTransport:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)


#: the least time a case is timed for in all: a case shorter than this is run more
#: than C{repeat} times (at most L{MAX_REPEAT}), so that one preemption on a shared
#: machine does not decide its best time (32 frames of 1 MiB decode in about 3 ms: with
#: three runs their ratio read 4.4 to 6.5 from one run to the next)
MIN_SECONDS = 0.2
MAX_REPEAT = 50


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    spent = 0.0
    runs = 0
    while runs < repeat or (spent < MIN_SECONDS and runs < MAX_REPEAT):
        gc.collect()
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best = min(best, took)
        spent += took
        runs += 1
    return best


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]


def _frames_case(size: int, count: int, repeat: int) -> tuple[float, float, float, float]:
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    ours_stream = _chunks(encode_frame(payload) * count)
    base_stream = _chunks((struct.pack(">I", size + 1) + b"\x01" + payload) * count)

    def ours() -> None:
        decoder = FrameDecoder(max_frame_length=64 * MiB)
        got = 0
        for chunk in ours_stream:
            got += len(decoder.feed(chunk))
        assert got == count, got

    def baseline() -> None:
        receiver = _Baseline()
        for chunk in base_stream:
            receiver.dataReceived(chunk)
        assert len(receiver.received) == count

    def ours_encode() -> None:
        for _ in range(count):
            encode_frame(payload, max_frame_length=64 * MiB)

    def baseline_encode() -> None:
        receiver = _Baseline()
        receiver.transport = _ListTransport()  # type: ignore[assignment]
        for _ in range(count):
            receiver.sendString(b"\x01" + payload)

    return (
        _best(ours, repeat),
        _best(baseline, repeat),
        _best(ours_encode, repeat),
        _best(baseline_encode, repeat),
    )


def _rate(count: int, size: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f} frames/s {count * size / seconds / MiB:>9,.1f} MB/s"


def bench_frames() -> dict[int, float]:
    # The same frames in a quick run (about 5 s: see _best): the rates of the large
    # frames depend on what ran before them (after 200,000 small frames the 1 MiB ratio
    # reads about half what it reads after 20,000), and make bench-check compares a quick
    # run with the full run's record.
    cases = [
        (100, 200_000),
        (64 * 1024, 512),
        (MiB, 32),
        (16 * MiB, 2),
    ]
    repeat = 3
    print(
        f"frame decode, {READ_SIZE // 1024} KiB reads (best of {repeat} or more, "
        f"{MIN_SECONDS:g} s per side at least):"
    )
    mbps: dict[int, float] = {}
    for size, count in cases:
        ours, base, ours_enc, base_enc = _frames_case(size, count, repeat)
        mbps[size] = count * size / ours / MiB
        label = (
            f"{size // MiB} MiB"
            if size >= MiB
            else (f"{size // 1024} KiB" if size >= 1024 else f"{size} B")
        )
        print(f"  {label:>7} x {count:<7} ours     {_rate(count, size, ours)}")
        row(
            "wire",
            f"frame decode, {label} frames, vs Int32StringReceiver",
            count * size / ours / MiB,
            count * size / base / MiB,
            unit="MB/s",
            target=">= 3" if size >= 16 * MiB else ">= 0.67",
        )
        print(f"  {'':>7}   {'':<7} baseline {_rate(count, size, base)}")
        print(f"  {'':>7}   {'':<7} ratio    baseline time / ours = {base / ours:.2f}x")
        print(
            f"  {'':>7}   {'':<7} encode   ours {count / ours_enc:,.0f}/s, "
            f"sendString {count / base_enc:,.0f}/s, ratio {base_enc / ours_enc:.2f}x"
        )
    print(
        f"  16 MiB MB/s vs our 1 MiB MB/s: {mbps[16 * MiB] / mbps[MiB]:.2f} (target: at least 0.5)"
    )
    return mbps


def _messages() -> list[tuple[str, object, bytes, Callable[[bytes], object]]]:
    rid = uuid.uuid4()
    body = b'{"items":[' + b",".join(b'{"sku":"A%d","n":%d}' % (i, i) for i in range(60)) + b"]}"
    request = HttpRequest(
        "req-1", "POST", "/api/v1/items", {"content-type": "application/json"}, body
    )
    response = HttpResponse("req-1", 200, {"content-type": "application/json"}, body)
    route = RouteToModule("inventory", "get_stock", rid, EncodedPayload.from_json({"sku": "A1"}))
    secret = SecretMessage("DATABASE_URL", "postgres://db/demo")
    return [
        (
            "heartbeat_ack envelope",
            HeartbeatAck(),
            encode_envelope(HeartbeatAck()),
            decode_from_module,
        ),
        ("secret line", secret, encode(secret), decode_from_orchestrator),
        (f"http_request ({len(body)} B body)", request, encode(request), decode_from_orchestrator),
        (
            f"http_response ({len(body)} B body)",
            response,
            encode_envelope(response),
            decode_from_module,
        ),
        ("route_to_module envelope", route, encode_envelope(route), decode_from_module),
    ]


def bench_codec(quick: bool) -> None:
    count = 2_000 if quick else 20_000
    repeat = 2 if quick else 3
    print(f"codec, {count} messages (best of {repeat}); baseline = same codec on stdlib json:")
    saved = _json.dumps, _json.loads
    for name, message, data, decode in _messages():
        encoder = encode_envelope if "envelope" in name else encode

        def enc(message: object = message, encoder: Callable[..., bytes] = encoder) -> None:
            for _ in range(count):
                encoder(message)

        def dec(data: bytes = data, decode: Callable[[bytes], object] = decode) -> None:
            for _ in range(count):
                decode(data)

        fast_enc, fast_dec = _best(enc, repeat), _best(dec, repeat)
        _json.dumps, _json.loads = _json._std_dumps, _json._std_loads
        try:
            slow_enc, slow_dec = _best(enc, repeat), _best(dec, repeat)
        finally:
            _json.dumps, _json.loads = saved
        print(f"  {name}")
        row(
            "wire",
            f"codec decode, {name}, {_json.BACKEND} vs stdlib json",
            count / fast_dec,
            count / slow_dec,
            unit="msg/s",
            target="-",
        )
        print(
            f"    encode {count / fast_enc:>10,.0f} msg/s ({_json.BACKEND}) "
            f"{count / slow_enc:>10,.0f} msg/s (json)  ratio {slow_enc / fast_enc:.2f}x"
        )
        print(
            f"    decode {count / fast_dec:>10,.0f} msg/s ({_json.BACKEND}) "
            f"{count / slow_dec:>10,.0f} msg/s (json)  ratio {slow_dec / fast_dec:.2f}x"
        )


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    start = time.perf_counter()
    bench_frames()
    bench_codec(quick)
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
