"""
Runtime settings that are not part of the module definition: timeouts and limits, from
twistd options or C{PYWATT_*} environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from attrs import frozen

from pywatt_twisted.errors import ConfigurationError


@frozen
class RuntimeConfig:
    """
    @ivar secret_timeout: seconds to wait for each C{secret} reply (C{PYWATT_SECRET_TIMEOUT}).
    @ivar max_concurrent_requests: HTTP-over-IPC requests in flight before new ones get
        503 (C{PYWATT_MAX_CONCURRENT_REQUESTS}).
    @ivar request_timeout: seconds an HTTP-over-IPC request may take before a 504
        (C{PYWATT_REQUEST_TIMEOUT}).
    @ivar shutdown_deadline: seconds in-flight requests get to finish on a graceful stop
        (C{PYWATT_SHUTDOWN_DEADLINE}).
    @ivar max_line_length: the longest stdin line accepted, in bytes.
    @ivar channel_preference: the order in which healthy channels carry sends
        (C{PYWATT_CHANNEL_PREFERENCE}, e.g. C{"ipc,tcp"}, the default).
    @ivar channel_required_timeout: seconds C{required} channels get to connect before
        start-up fails (C{PYWATT_CHANNEL_REQUIRED_TIMEOUT}).
    @ivar channel_connect_timeout: seconds per connection attempt
        (C{PYWATT_CHANNEL_CONNECT_TIMEOUT}).
    @ivar channel_queue_size: messages that may wait for a channel to come up
        (C{PYWATT_CHANNEL_QUEUE_SIZE}).
    @ivar channel_queue_deadline: seconds a message may wait for a channel
        (C{PYWATT_CHANNEL_QUEUE_DEADLINE}).
    @ivar channel_liveness_deadline: abort and reconnect a channel silent for this many
        seconds; C{None} (C{PYWATT_CHANNEL_LIVENESS=0}, the default) turns it off.
    @ivar identify: where identify is sent on connect: C{tcp}, C{all} or C{off}
        (C{PYWATT_IDENTIFY}).
    @ivar max_frame_length: the channel frame cap in bytes, both directions
        (C{PYWATT_MAX_FRAME_LENGTH}).
    @ivar routed_replies: answer C{routed_module_message}s with the
        C{routed_module_response} extension (PROTOCOL.md A3; C{PYWATT_ROUTED_REPLIES},
        on by default, C{0}/C{off} turns it off).
    @ivar registration_address: C{host:port} of a registration-protocol service
        (PROTOCOL.md 6.10) to register with (C{PYWATT_REGISTRATION_ADDRESS}); C{None}, the
        default, turns the client off.
    @ivar registration_heartbeat: seconds between registration heartbeats
        (C{PYWATT_REGISTRATION_HEARTBEAT}).
    """

    secret_timeout: float = 30.0
    max_concurrent_requests: int = 64
    request_timeout: float = 60.0
    shutdown_deadline: float = 10.0
    max_line_length: int = 1024 * 1024
    channel_preference: tuple[str, ...] = ("ipc", "tcp")
    channel_required_timeout: float = 30.0
    channel_connect_timeout: float = 30.0
    channel_queue_size: int = 1000
    channel_queue_deadline: float = 30.0
    channel_liveness_deadline: float | None = None
    identify: str = "tcp"
    max_frame_length: int = 16 * 1024 * 1024
    routed_replies: bool = True
    registration_address: str | None = None
    registration_heartbeat: float = 30.0

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **overrides: float | int | str | None
    ) -> RuntimeConfig:
        """
        Build a config from C{PYWATT_*} variables; explicit C{overrides} (not None) win.
        """
        env = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for field_name, variable, kind in (
            ("secret_timeout", "PYWATT_SECRET_TIMEOUT", float),
            ("max_concurrent_requests", "PYWATT_MAX_CONCURRENT_REQUESTS", int),
            ("request_timeout", "PYWATT_REQUEST_TIMEOUT", float),
            ("shutdown_deadline", "PYWATT_SHUTDOWN_DEADLINE", float),
            ("channel_required_timeout", "PYWATT_CHANNEL_REQUIRED_TIMEOUT", float),
            ("channel_connect_timeout", "PYWATT_CHANNEL_CONNECT_TIMEOUT", float),
            ("channel_queue_size", "PYWATT_CHANNEL_QUEUE_SIZE", int),
            ("channel_queue_deadline", "PYWATT_CHANNEL_QUEUE_DEADLINE", float),
            ("max_frame_length", "PYWATT_MAX_FRAME_LENGTH", int),
            ("registration_heartbeat", "PYWATT_REGISTRATION_HEARTBEAT", float),
        ):
            raw = overrides.get(field_name)
            if isinstance(raw, str):
                raw = kind(raw)
            text = env.get(variable)
            if raw is None and text:
                try:
                    raw = kind(text)
                except ValueError:
                    raise ConfigurationError(
                        f"{variable} must be a {kind.__name__}, got {env[variable]!r}"
                    ) from None
            if raw is not None:
                if raw <= 0:
                    raise ConfigurationError(f"{field_name} must be positive, got {raw!r}")
                values[field_name] = kind(raw)
        values.update(_channel_values(env, overrides))  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


def _channel_values(
    env: Mapping[str, str], overrides: Mapping[str, float | int | str | None]
) -> dict[str, object]:
    """
    The channel settings that are not plain positive numbers: preference, liveness
    (0 turns it off) and identify.
    """
    values: dict[str, object] = {}
    raw = overrides.get("channel_preference")
    if raw is None:
        raw = env.get("PYWATT_CHANNEL_PREFERENCE") or None
    if raw is not None:
        names = tuple(n.strip().lower() for n in str(raw).split(",") if n.strip())
        if (
            not names
            or any(n not in ("tcp", "ipc") for n in names)
            or len(set(names)) != len(names)
        ):
            raise ConfigurationError(
                "PYWATT_CHANNEL_PREFERENCE / --channel-preference must list tcp and/or ipc, "
                f"comma-separated, each once (e.g. 'ipc,tcp'), got {raw!r}"
            )
        values["channel_preference"] = names + tuple(n for n in ("ipc", "tcp") if n not in names)
    raw = overrides.get("channel_liveness_deadline")
    if raw is None and env.get("PYWATT_CHANNEL_LIVENESS"):
        raw = env["PYWATT_CHANNEL_LIVENESS"]
    if raw is not None:
        try:
            seconds = float(raw)
        except ValueError:
            raise ConfigurationError(
                f"PYWATT_CHANNEL_LIVENESS must be a number of seconds (0: off), got {raw!r}"
            ) from None
        if seconds < 0:
            raise ConfigurationError(f"channel liveness must be 0 (off) or positive, got {raw!r}")
        values["channel_liveness_deadline"] = seconds or None
    raw = overrides.get("identify")
    if raw is None:
        raw = env.get("PYWATT_IDENTIFY") or None
    if raw is not None:
        mode = str(raw).strip().lower()
        if mode not in ("tcp", "all", "off"):
            raise ConfigurationError(
                f"PYWATT_IDENTIFY / --identify must be tcp, all or off, got {raw!r}"
            )
        values["identify"] = mode
    raw = overrides.get("routed_replies")
    if raw is None:
        raw = env.get("PYWATT_ROUTED_REPLIES") or None
    if raw is not None:
        flag = _flag(raw)
        if flag is None:
            raise ConfigurationError(
                f"PYWATT_ROUTED_REPLIES must be 1/on/true or 0/off/false, got {raw!r}"
            )
        values["routed_replies"] = flag
    raw = overrides.get("registration_address")
    if raw is None:
        raw = env.get("PYWATT_REGISTRATION_ADDRESS") or None
    if raw is not None:
        host, _, port = str(raw).strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                f"PYWATT_REGISTRATION_ADDRESS must be host:port (e.g. 127.0.0.1:9901), got {raw!r}"
            )
        values["registration_address"] = f"{host}:{int(port)}"
    return values


def _flag(raw: object) -> bool | None:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "on", "true", "yes"):
        return True
    if text in ("0", "off", "false", "no"):
        return False
    return None
