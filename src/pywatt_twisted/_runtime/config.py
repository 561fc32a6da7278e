"""
Runtime settings that are not part of the module definition: timeouts and limits, from
twistd options or C{PYWATT_*} environment variables.

Every setting is declared once, in L{SETTINGS}: its field on L{RuntimeConfig}, its
environment variable, its twistd option and its help text all come from that one row.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from attrs import fields, frozen

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.wire._value import Value
from pywatt_twisted.wire.framing import DEFAULT_MAX_FRAME_LENGTH

MiB = 1024 * 1024


@frozen(eq=False, repr=False)
class RuntimeConfig(Value):
    """
    The module process's limits and timeouts. L{SETTINGS} documents each field with its
    environment variable and twistd option; C{docs/reliability.md} says what happens when
    a limit is reached.
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
    max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH
    routed_replies: bool = True
    registration_address: str | None = None
    registration_heartbeat: float = 30.0
    # Reliability limits (docs/reliability.md).
    stdout_high_water: int = 4 * MiB
    stdout_low_water: int | None = None
    channel_high_water: int = 4 * MiB
    channel_queue_bytes: int = 64 * MiB
    handler_max_concurrent: int = 64
    handler_queue_size: int = 1000
    handler_queue_bytes: int = 64 * MiB
    handler_timeout: float = 30.0
    # Module-to-module requests: deadline and circuit breakers (docs/messaging.md).
    routed_timeout: float = 30.0
    breaker_failures: int = 5
    breaker_error_rate: float = 0.5
    breaker_min_calls: int = 20
    breaker_window: float = 10.0
    breaker_reset: float = 10.0
    breaker_max_reset: float = 60.0
    log_buffer_bytes: int = 1 * MiB
    tls_handshake_timeout: float = 10.0
    channel_healthy_after: float = 10.0
    redaction_history: int = 3
    max_body_size: int = 16 * MiB
    http_header_timeout: float = 30.0
    http_idle_timeout: float = 60.0
    max_header_size: int = 16 * 1024
    # Proxied services (state.service(name); docs/data.md).
    service_timeout: float = 30.0
    service_max_in_flight: int = 64
    service_queue_size: int = 1024
    tracing: str = "auto"
    max_stream_body_size: int = 1024 * MiB
    stream_stall_timeout: float = 60.0
    # Health checks (docs/observability.md).
    health_check_timeout: float = 2.0
    health_check_cache: float = 5.0
    # Channel and module-to-module SLO alerts (docs/observability.md); 0: off.
    slo_window: float = 60.0
    slo_latency_p99: float = 1.0
    slo_error_rate: float = 0.05
    slo_channel_down: float = 30.0
    slo_min_samples: int = 20
    ipc_only: bool = False
    # The start-up heap frozen after the announce (docs/running.md).
    gc_freeze: bool = True

    def __attrs_post_init__(self) -> None:
        if self.breaker_max_reset < self.breaker_reset:
            raise ConfigurationError(
                f"breaker max reset ({self.breaker_max_reset:g} s) must be at least the "
                f"breaker reset ({self.breaker_reset:g} s)"
            )
        if self.stdout_low_water is not None and self.stdout_low_water >= self.stdout_high_water:
            raise ConfigurationError(
                f"stdout low-water mark ({self.stdout_low_water} bytes) must be below the "
                f"high-water mark ({self.stdout_high_water} bytes)"
            )

    @property
    def stdout_resume_below(self) -> int:
        """
        The stdout low-water mark in bytes: C{stdout_low_water}, or a quarter of the
        high-water mark when it is not set.
        """
        if self.stdout_low_water is None:
            return self.stdout_high_water // 4
        return self.stdout_low_water

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> RuntimeConfig:
        """
        Build a config from C{PYWATT_*} variables; explicit C{overrides} (not None) win.
        Override keys are field names (C{max_body_size}) or twistd option names
        (C{max-body-size}).

        @raise ConfigurationError: a value that does not parse or is out of range, naming
            the variable or option and what it expects.
        """
        env = os.environ if environ is None else environ
        given = {k.replace("-", "_"): v for k, v in overrides.items()}
        unknown = set(given) - {s.field for s in SETTINGS}
        if unknown:
            raise TypeError(f"unknown RuntimeConfig settings: {sorted(unknown)}")
        values: dict[str, object] = {}
        for setting in SETTINGS:
            raw = given.get(setting.field)
            source = f"--{setting.option}"
            if raw is None:
                for variable in (setting.variable, *setting.aliases):
                    text = env.get(variable)
                    if text is not None and text != "":
                        raw, source = text, variable
                        break
                else:
                    continue
            values[setting.field] = setting.parse(raw, source)
        return cls(**values)  # type: ignore[arg-type]


def _positive(kind: type) -> Callable[[object, str], object]:
    def parse(raw: object, source: str) -> object:
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"{source} must be {'an integer' if kind is int else 'a number'}, got {raw!r}"
            ) from None
        if value <= 0:
            raise ConfigurationError(f"{source} must be positive, got {raw!r}")
        return value

    return parse


def _off_or_positive(raw: object, source: str) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{source} must be a number (0: off), got {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"{source} must be 0 (off) or positive, got {raw!r}")
    return value


def _share(raw: object, source: str) -> float:
    value = _off_or_positive(raw, source)
    if value > 1:
        raise ConfigurationError(
            f"{source} is a share between 0 and 1 (0.05 is 5 %; 0: off), got {raw!r}"
        )
    return value


def _preference(raw: object, source: str) -> tuple[str, ...]:
    names = tuple(n.strip().lower() for n in str(raw).split(",") if n.strip())
    auto = names[:1] == ("auto",)
    rest = names[1:] if auto else names
    if (not names) or any(n not in ("tcp", "ipc") for n in rest) or len(set(rest)) != len(rest):
        raise ConfigurationError(
            "PYWATT_CHANNEL_PREFERENCE / --channel-preference must list tcp and/or ipc, "
            "comma-separated, each once (e.g. 'ipc,tcp'), or be 'auto' (route by measured "
            f"latency; 'auto,tcp' starts on tcp), got {raw!r}"
        )
    return (("auto",) if auto else ()) + rest + tuple(n for n in ("ipc", "tcp") if n not in rest)


def _liveness(raw: object, source: str) -> float | None:
    try:
        seconds = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"PYWATT_CHANNEL_LIVENESS must be a number of seconds (0: off), got {raw!r}"
        ) from None
    if seconds < 0:
        raise ConfigurationError(f"channel liveness must be 0 (off) or positive, got {raw!r}")
    return seconds or None


def _identify(raw: object, source: str) -> str:
    mode = str(raw).strip().lower()
    if mode not in ("tcp", "all", "off"):
        raise ConfigurationError(
            f"PYWATT_IDENTIFY / --identify must be tcp, all or off, got {raw!r}"
        )
    return mode


def _routed_replies(raw: object, source: str) -> bool:
    flag = _flag(raw)
    if flag is None:
        raise ConfigurationError(
            f"PYWATT_ROUTED_REPLIES must be 1/on/true or 0/off/false, got {raw!r}"
        )
    return flag


def _on_off(raw: object, source: str) -> bool:
    flag = _flag(raw)
    if flag is None:
        raise ConfigurationError(f"{source} must be 1/on/true or 0/off/false, got {raw!r}")
    return flag


def _tracing(raw: object, source: str) -> str:
    mode = str(raw).strip().lower()
    if mode not in ("auto", "off"):
        raise ConfigurationError(f"PYWATT_TRACING / --tracing must be auto or off, got {raw!r}")
    return mode


def _address(raw: object, source: str) -> str:
    host, _, port = str(raw).strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(
            f"PYWATT_REGISTRATION_ADDRESS must be host:port (e.g. 127.0.0.1:9901), got {raw!r}"
        )
    return f"{host}:{int(port)}"


@frozen(eq=False, repr=False)
class Setting(Value):
    """
    One runtime setting: the L{RuntimeConfig} field, its environment variable, its twistd
    option, its help text, and the parser that turns a string (or a typed value) into the
    field's value, raising L{ConfigurationError} naming C{source} when it cannot.
    """

    field: str
    variable: str
    option: str
    help: str
    parse: Callable[[object, str], Any]
    #: In C{twistd pywatt --help}; the registration settings are environment-only.
    in_options: bool = True
    #: Further environment variables read when C{variable} is not set (the original
    #: SDKs' names), in order.
    aliases: tuple[str, ...] = ()

    @property
    def default(self) -> object:
        return {f.name: f.default for f in fields(RuntimeConfig)}[self.field]


def _s(
    field: str, help: str, parse: Callable[[object, str], Any], in_options: bool = True
) -> Setting:
    return Setting(
        field=field,
        variable="PYWATT_" + field.upper(),
        option=field.replace("_", "-"),
        help=help,
        parse=parse,
        in_options=in_options,
    )


_int = _positive(int)
_float = _positive(float)


def _rate(raw: object, source: str) -> float:
    value = _float(raw, source)
    assert isinstance(value, float)
    if value > 1:
        raise ConfigurationError(f"{source} must be a share in (0, 1], got {raw!r}")
    return value


#: Every runtime setting, once. C{tap.Options} and L{RuntimeConfig.from_environment} read it.
SETTINGS: tuple[Setting, ...] = (
    _s("secret_timeout", "Seconds to wait for each secret.", _float),
    _s("max_concurrent_requests", "HTTP-over-IPC requests in flight before 503.", _int),
    _s("request_timeout", "Seconds before an HTTP-over-IPC request gets 504.", _float),
    _s("shutdown_deadline", "Seconds in-flight requests get on a graceful stop.", _float),
    _s(
        "max_line_length",
        "The longest init line (the first stdin line) accepted, in bytes; later stdin and "
        "stdout lines may be as long as --max-frame-length.",
        _int,
    ),
    _s(
        "channel_preference",
        "Channel choice for sends: ipc,tcp or tcp,ipc, or auto (by measured latency).",
        _preference,
    ),
    _s(
        "channel_required_timeout",
        "Seconds required channels get to connect before start-up fails.",
        _float,
    ),
    _s("channel_connect_timeout", "Seconds per channel connection attempt.", _float),
    _s("channel_queue_size", "Messages that may wait for a channel to come up.", _int),
    _s("channel_queue_deadline", "Seconds a message may wait for a channel.", _float),
    Setting(
        field="channel_liveness_deadline",
        variable="PYWATT_CHANNEL_LIVENESS",
        option="channel-liveness",
        help="Reconnect a channel silent for this many seconds (0: off).",
        parse=_liveness,
    ),
    _s("identify", "Send identify first on connect: tcp, all or off.", _identify),
    _s(
        "max_frame_length",
        "Channel frame cap in bytes, both directions; also the cap on stdin/stdout lines "
        "after the init line.",
        _int,
    ),
    _s(
        "routed_replies",
        "Answer routed module messages with the routed_module_response extension: on or off.",
        _routed_replies,
    ),
    _s(
        "registration_address",
        "host:port of a registration-protocol service to register with.",
        _address,
        in_options=False,
    ),
    _s("registration_heartbeat", "Seconds between registration heartbeats.", _float, False),
    _s(
        "stdout_high_water",
        "Unsent stdout bytes above which the module stops reading stdin.",
        _int,
    ),
    _s(
        "stdout_low_water",
        "Unsent stdout bytes below which stdin reading resumes (unset: a quarter of the "
        "high-water mark).",
        _int,
    ),
    _s(
        "channel_high_water",
        "Unsent bytes on a channel above which it stops reading new work from it.",
        _int,
    ),
    _s("channel_queue_bytes", "Bytes that may wait for a channel to come up.", _int),
    _s(
        "handler_max_concurrent",
        "Routed module-to-module handler calls running at once before they queue.",
        _int,
    ),
    _s(
        "handler_queue_size",
        "Routed handler calls that may wait for a slot before 'overloaded' replies.",
        _int,
    ),
    _s(
        "handler_queue_bytes",
        "Payload bytes of routed handler calls waiting for a slot before 'overloaded' replies.",
        _int,
    ),
    _s("handler_timeout", "Default seconds a routed handler may take.", _float),
    _s(
        "routed_timeout",
        "Default seconds to the deadline of a module-to-module request (sent as deadline_ms).",
        _float,
    ),
    _s(
        "breaker_failures",
        "Consecutive failures (timeout, unavailable, target_exited) that open a target's "
        "circuit breaker.",
        _int,
    ),
    _s(
        "breaker_error_rate",
        "Share of failed requests (0-1] over --breaker-window that opens the breaker.",
        _rate,
    ),
    _s("breaker_min_calls", "Requests in the window before the error rate applies.", _int),
    _s("breaker_window", "Seconds the breaker's error rate is measured over.", _float),
    _s("breaker_reset", "Seconds an open breaker waits before a probe request.", _float),
    _s(
        "breaker_max_reset",
        "Longest wait of an open breaker (the wait doubles while probes fail).",
        _float,
    ),
    _s(
        "log_buffer_bytes",
        "Bytes of log lines buffered for a stderr that is not drained before lines drop.",
        _int,
    ),
    _s("tls_handshake_timeout", "Seconds a channel's TLS handshake may take.", _float),
    _s(
        "channel_healthy_after",
        "Seconds a channel must stay up before its reconnect backoff resets.",
        _float,
    ),
    _s("redaction_history", "Past values per secret still redacted after rotation.", _int),
    _s("max_body_size", "Largest HTTP request body in bytes (413 above it).", _int),
    _s("http_header_timeout", "Seconds a client gets to send a request's headers.", _float),
    _s("http_idle_timeout", "Seconds an idle HTTP connection is kept open.", _float),
    _s("max_header_size", "Largest HTTP request header block in bytes (431 above it).", _int),
    _s("service_timeout", "Seconds each proxied service operation waits for its reply.", _float),
    _s(
        "service_max_in_flight",
        "Operations of one proxied service outstanding at once before they queue.",
        _int,
    ),
    _s(
        "service_queue_size",
        "Operations of one proxied service waiting for a slot before calls fail at once.",
        _int,
    ),
    _s(
        "tracing",
        "OpenTelemetry tracing: auto (on when OTEL_EXPORTER_OTLP_ENDPOINT or "
        "OTEL_TRACES_EXPORTER is set and the [otel] extra is installed) or off.",
        _tracing,
    ),
    _s(
        "max_stream_body_size",
        "Largest HTTP-over-IPC request body streamed in chunks, in bytes (413 above it).",
        _int,
    ),
    _s(
        "stream_stall_timeout",
        "Seconds a streamed body may make no progress before it is cancelled.",
        _float,
    ),
    _s(
        "health_check_timeout",
        "Seconds one /health check (database, cache, channel, your own) may take.",
        _float,
    ),
    _s(
        "health_check_cache",
        "Seconds a /health check result is reused before the check runs again.",
        _float,
    ),
    _s("slo_window", "Seconds of the sliding window the SLO alerts look at.", _float),
    _s(
        "slo_latency_p99",
        "Alert when a channel's or target's p99 round trip exceeds this many seconds (0: off).",
        _off_or_positive,
    ),
    _s(
        "slo_error_rate",
        "Alert when this share of a channel's or target's round trips fail or time out (0: off).",
        _share,
    ),
    _s(
        "slo_channel_down",
        "Alert when a channel stays down this many seconds (0: off).",
        _off_or_positive,
    ),
    _s(
        "slo_min_samples",
        "Round trips the window needs before a latency or error-rate alert.",
        _int,
    ),
    Setting(
        field="ipc_only",
        variable="PYWATT_IPC_ONLY",
        option="ipc-only",
        help="Bind no listen socket: serve HTTP only over stdin and channels (1/0).",
        parse=_on_off,
        aliases=("IPC_ONLY",),
    ),
    _s(
        "gc_freeze",
        "After the announce, collect once and freeze the start-up heap so full garbage "
        "collections skip it (1/0; docs/running.md).",
        _on_off,
    ),
)


def option_parameters() -> list[list[Any]]:
    """
    The C{optParameters} rows of C{twistd pywatt} for L{SETTINGS}, each help text ending
    with its default and its environment variable. Values are parsed by
    L{RuntimeConfig.from_environment}, so options arrive as strings.
    """
    rows: list[list[Any]] = []
    for s in SETTINGS:
        if not s.in_options:
            continue
        default = s.default
        shown = ",".join(default) if isinstance(default, tuple) else default  # type: ignore[arg-type]
        if s.field == "channel_liveness_deadline":
            shown = "0: off"
        elif isinstance(default, bool):
            shown = "on" if default else "off"
        elif default is None:
            shown = "unset"
        rows.append([s.option, None, None, f"{s.help} (default {shown}; ${s.variable})"])
    return rows


def _flag(raw: object) -> bool | None:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "on", "true", "yes"):
        return True
    if text in ("0", "off", "false", "no"):
        return False
    return None
