# -*- test-case-name: tests.runtime.test_channels -*-
"""
The failover choice: which channel a send goes to (the first writable one in the
preference order, after an optional preferred one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pywatt_twisted.link.channel import LinkChannel

__all__ = ["FailoverChoice"]


class FailoverChoice:
    """
    Picks a writable channel.

    @param channels: the configured channels by name.
    @param preference: channel names, most preferred first (names not configured are
        ignored).
    """

    def __init__(self, channels: Mapping[str, LinkChannel], preference: Iterable[str]) -> None:
        self.channels = channels
        self.order = [n for n in preference if n in channels]

    def pick(self, prefer: str | None = None) -> LinkChannel | None:
        """
        C{prefer} if it is writable, else the first writable channel in the preference
        order, else C{None}.
        """
        if prefer is not None:
            channel = self.channels.get(prefer)
            if channel is not None and channel.writable:
                return channel
        for name in self.order:
            channel = self.channels[name]
            if channel.writable:
                return channel
        return None

    def describe(self) -> str:
        """
        Every channel's state and last error, for error messages.
        """
        if not self.channels:
            return "no channel is configured"
        return ", ".join(
            f"{c.name} {c.state.value}" + (f" ({c.last_error})" if c.last_error else "")
            for c in self.channels.values()
        )
