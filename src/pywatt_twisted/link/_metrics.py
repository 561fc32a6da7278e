# -*- test-case-name: tests.runtime.test_channels -*-
"""
The channels' Prometheus metrics: connects, losses, failures, frames and bytes per
channel and direction, bad frames, the last error, and the outbound queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pywatt_twisted.link._channel import LinkChannel
from pywatt_twisted.link._queue import OutboundQueue

__all__ = ["collect_channel_metrics"]


def collect_channel_metrics(channels: Mapping[str, LinkChannel], queue: OutboundQueue) -> list[Any]:
    """
    The Prometheus families of the channels and the outbound queue (a collector for
    L{ModuleMetrics.add_collector}).
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    connects = CounterMetricFamily(
        "pywatt_channel_connects", "Connections made, per channel.", labels=["channel"]
    )
    disconnects = CounterMetricFamily(
        "pywatt_channel_disconnects", "Connections lost, per channel.", labels=["channel"]
    )
    failures = CounterMetricFamily(
        "pywatt_channel_connect_failures",
        "Connection attempts that failed, per channel.",
        labels=["channel"],
    )
    frames = CounterMetricFamily(
        "pywatt_channel_frames",
        "Frames, per channel and direction.",
        labels=["channel", "direction"],
    )
    octets = CounterMetricFamily(
        "pywatt_channel_bytes",
        "Bytes, per channel and direction.",
        labels=["channel", "direction"],
    )
    bad = CounterMetricFamily(
        "pywatt_channel_bad_frames",
        "Frames skipped or rejected (bad format, undecodable, oversize), per channel.",
        labels=["channel"],
    )
    last_error = GaugeMetricFamily(
        "pywatt_channel_last_error_timestamp_seconds",
        "When the channel last failed (Unix seconds), labelled with the error kind.",
        labels=["channel", "kind"],
    )
    for name, c in channels.items():
        connects.add_metric([name], c.connects)
        disconnects.add_metric([name], c.disconnects)
        failures.add_metric([name], c.connect_failures)
        frames.add_metric([name, "in"], c.counters.frames_in)
        frames.add_metric([name, "out"], c.counters.frames_out)
        octets.add_metric([name, "in"], c.counters.bytes_in)
        octets.add_metric([name, "out"], c.counters.bytes_out)
        bad.add_metric([name], c.counters.bad_frames)
        if c.last_error_at is not None:
            last_error.add_metric([name, c.last_error_kind or "error"], c.last_error_at)
    depth = GaugeMetricFamily(
        "pywatt_channel_queue_depth", "Messages waiting for a channel to come up."
    )
    depth.add_metric([], len(queue))
    queue_bytes = GaugeMetricFamily(
        "pywatt_channel_queue_bytes", "Bytes of messages waiting for a channel to come up."
    )
    queue_bytes.add_metric([], queue.bytes)
    queue_failures = CounterMetricFamily(
        "pywatt_channel_queue_failures",
        "Messages that failed without being sent, by reason (full, expired).",
        labels=["reason"],
    )
    queue_failures.add_metric(["full"], queue.rejected)
    queue_failures.add_metric(["expired"], queue.expired)
    return [
        connects,
        disconnects,
        failures,
        frames,
        octets,
        bad,
        last_error,
        depth,
        queue_bytes,
        queue_failures,
    ]
