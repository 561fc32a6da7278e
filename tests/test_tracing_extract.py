"""
The library's own reading of W3C C{traceparent}/C{tracestate} (issue 16's tracing cost):
with the default propagators it must give what the SDK's propagators give, for every
header, valid or not; any other propagator gets the general path.
"""

from __future__ import annotations

import logging
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from pywatt_twisted import tracing

try:
    from opentelemetry import baggage, propagate
    from opentelemetry.trace import get_current_span
except ImportError:  # pragma: no cover - the API is a dependency
    propagate = None

HEX = "0123456789abcdef"


def _hex(width: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(HEX, min_size=width, max_size=width),
        st.just("0" * width),
        st.text(HEX + "ABCDEFxg-", min_size=width - 1, max_size=width + 1),
    )


#: traceparent values: mostly well-formed (every version, zero ids, suffixes,
#: whitespace), some arbitrary text and oversized values
TRACEPARENTS = st.one_of(
    st.builds(
        lambda pad, version, trace_id, span_id, flags, rest, tail: (
            f"{pad}{version}-{trace_id}-{span_id}-{flags}{rest}{tail}"
        ),
        st.sampled_from(["", " ", "\t", " \t "]),
        st.one_of(st.sampled_from(["00", "01", "cc", "fe", "ff"]), _hex(2)),
        _hex(32),
        _hex(16),
        st.one_of(st.sampled_from(["00", "01", "03", "ff"]), _hex(2)),
        st.sampled_from(["", "", "", "-", "-xyz", "-00-00", "x", "-é"]),
        st.sampled_from(["", "", " ", "\t", "  x"]),
    ),
    st.text(max_size=80),
    st.builds(lambda n: "00-" + "1" * 32 + "-" + "2" * 16 + "-01" + " " * n, st.integers(450, 520)),
)

#: tracestate values: valid lists, junk, oversized
TRACESTATES = st.one_of(
    st.none(),
    st.lists(
        st.one_of(
            st.sampled_from(["congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7", "a=1,b=2", "", " , "]),
            st.text(max_size=30),
            st.builds(lambda n: "k=" + "v" * n, st.integers(200, 260)),
        ),
        min_size=1,
        max_size=3,
    ),
)

BAGGAGE = st.one_of(st.none(), st.sampled_from(["", "user=alice", "a=1;p, b=%20x", "junk"]))


def _seen(context: Any) -> tuple[Any, ...]:
    """What a span started in C{context} sees: its parent's span context, the baggage."""
    span_context = get_current_span(context).get_span_context()
    return (
        span_context,
        dict(span_context.trace_state),
        dict(baggage.get_all(context)),
    )


class W3CExtractionTests(SynchronousTestCase):
    def setUp(self) -> None:
        if propagate is None:  # pragma: no cover
            self.skipTest("no OpenTelemetry API")
        tracing._load()
        # (the propagators log the invalid values the properties generate)
        logger = logging.getLogger("opentelemetry")
        self.addCleanup(logger.setLevel, logger.level)
        logger.setLevel(logging.CRITICAL)

    def headers(self, traceparent: Any, tracestate: Any, bag: Any) -> Headers:
        headers = Headers({b"host": [b"module"]})
        if traceparent is not None:
            headers.setRawHeaders(b"traceparent", [traceparent.encode("utf-8")])
        if tracestate is not None:
            headers.setRawHeaders(b"tracestate", [v.encode("utf-8") for v in tracestate])
        if bag is not None:
            headers.setRawHeaders(b"baggage", [bag.encode("utf-8")])
        return headers

    @given(st.one_of(st.none(), TRACEPARENTS), TRACESTATES, BAGGAGE)
    def test_headers_as_the_propagators_read_them(
        self, traceparent: Any, tracestate: Any, bag: Any
    ) -> None:
        self.assertTrue(tracing._default_propagation())
        headers = self.headers(traceparent, tracestate, bag)
        expected = propagate.extract(headers, getter=tracing._headers_getter)
        self.assertEqual(_seen(tracing.headers_parent(headers)), _seen(expected))

    @given(
        st.one_of(st.none(), TRACEPARENTS, st.integers()),
        st.one_of(st.none(), st.sampled_from(["congo=t61rcWkgMzE", "a=1,b=2", "x"]), st.just(3)),
        BAGGAGE,
    )
    def test_properties_as_the_propagators_read_them(
        self, traceparent: Any, tracestate: Any, bag: Any
    ) -> None:
        properties: dict[str, object] = {"target_endpoint": "lookup"}
        for key, value in (("traceparent", traceparent), ("tracestate", tracestate)):
            if value is not None:
                properties[key] = value
        if bag is not None:
            properties["baggage"] = bag
        expected = propagate.extract(properties, getter=tracing._properties_getter)
        self.assertEqual(_seen(tracing.properties_parent(properties)), _seen(expected))

    def test_tracestate_length_limit_at_its_edge(self) -> None:
        """
        32 valid members adding up to around the API's limit (joined by commas, as RFC
        9110 combines header lines): kept up to it, all dropped beyond it.
        """
        from opentelemetry.trace.span import _TRACECONTEXT_MAXIMUM_TRACESTATE_LENGTH as limit

        value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        for total in range(limit - 3, limit + 4):
            for lines in (1, 32):
                room = total - 31  # (the members' characters, without the commas)
                sizes = [room // 32 + (i < room % 32) for i in range(32)]
                members = [f"k{i:02}=" + "v" * (size - 4) for i, size in enumerate(sizes)]
                tracestate = [",".join(members)] if lines == 1 else members
                headers = self.headers(value, tracestate, None)
                expected = propagate.extract(headers, getter=tracing._headers_getter)
                seen = _seen(tracing.headers_parent(headers))
                self.assertEqual(seen, _seen(expected), (total, lines))
                self.assertEqual(len(seen[1]), 32 if total <= limit else 0, (total, lines))

    def test_a_valid_traceparent_is_read_without_the_propagators(self) -> None:
        """
        The fast path is taken (the propagators are not called) for a valid header.
        """
        calls = []
        textmap = propagate.get_global_textmap()
        original = textmap.extract
        textmap.extract = lambda *a, **k: calls.append(a) or original(*a, **k)  # type: ignore
        self.addCleanup(delattr, textmap, "extract")
        value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        context = tracing.headers_parent(self.headers(value, ["congo=t61rcWkgMzE"], None))
        remote = get_current_span(context).get_span_context()
        self.assertEqual(remote.trace_id, 0x4BF92F3577B34DA6A3CE929D0E0E4736)
        self.assertEqual(remote.span_id, 0x00F067AA0BA902B7)
        self.assertTrue(remote.is_remote)
        self.assertEqual(dict(remote.trace_state), {"congo": "t61rcWkgMzE"})
        self.assertEqual(calls, [])
        tracing.headers_parent(self.headers(value, None, "user=alice"))
        self.assertEqual(len(calls), 1)  # (baggage: the propagators)

    def test_non_utf8_header_bytes_do_not_raise(self) -> None:
        """
        Header bytes are read as latin-1 (Twisted would decode a C{str} name's values
        as UTF-8 and raise on other bytes).
        """
        headers = Headers({b"traceparent": [b"01-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01-\xff"]})
        for context in (
            tracing.headers_parent(headers),
            propagate.extract(headers, getter=tracing._headers_getter),
        ):
            self.assertEqual(
                get_current_span(context).get_span_context().trace_id, int("1" * 32, 16)
            )

    def test_another_propagator_gets_the_general_path(self) -> None:
        from opentelemetry.propagators.composite import CompositePropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        class Mine(TraceContextTextMapPropagator):
            pass

        before = propagate.get_global_textmap()
        self.addCleanup(propagate.set_global_textmap, before)
        self.assertTrue(tracing._default_propagation())
        propagate.set_global_textmap(CompositePropagator([Mine()]))
        self.assertFalse(tracing._default_propagation())
        propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
        self.assertTrue(tracing._default_propagation())
        propagate.set_global_textmap(TraceContextTextMapPropagator())
        self.assertFalse(tracing._default_propagation())
        value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        context = tracing.headers_parent(self.headers(value, None, None))
        self.assertEqual(get_current_span(context).get_span_context().span_id, 0x00F067AA0BA902B7)
