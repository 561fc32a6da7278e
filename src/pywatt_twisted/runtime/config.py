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
    """

    secret_timeout: float = 30.0
    max_concurrent_requests: int = 64
    request_timeout: float = 60.0
    shutdown_deadline: float = 10.0
    max_line_length: int = 1024 * 1024

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **overrides: float | int | None
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
        ):
            raw: float | int | None = overrides.get(field_name)
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
        return cls(**values)  # type: ignore[arg-type]
