"""
IPC-only mode: no listen socket, HTTP over stdin and channels only, C{"listen": ""}
announced. Turned on by the definition, by C{PYWATT_IPC_ONLY} / C{IPC_ONLY} (or
C{--ipc-only}), or by the init blob.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve
from klein import Klein
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted import pywatt_module
from pywatt_twisted._runtime.config import RuntimeConfig, option_parameters
from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.testing import FakeOrchestrator
from pywatt_twisted.wire.codec import decode_init, encode_init
from pywatt_twisted.wire.messages import PortRequest


def create_app(state: Any) -> Any:
    app = Klein()

    @app.route("/ping", methods=["GET"])
    def ping(request: Any) -> Any:
        return {"pong": True}

    return app


class IpcOnlyTests(SynchronousTestCase):
    def start(
        self,
        definition: Any,
        *,
        config: RuntimeConfig | None = None,
        blob_ipc_only: bool = False,
        listen: Any = "127.0.0.1:4500",
    ) -> tuple[FakeOrchestrator, Any]:
        orchestrator = FakeOrchestrator(channels=["tcp", "ipc"], config=config, listen=listen)
        if blob_ipc_only:
            plain = orchestrator.init_blob
            orchestrator.init_blob = lambda: evolve(plain(), ipc_only=True)  # type: ignore[method-assign]
        module = self.successResultOf(orchestrator.start(definition))
        return orchestrator, module

    def assert_ipc_only(self, orchestrator: FakeOrchestrator, module: Any) -> None:
        assert orchestrator.announcement is not None
        self.assertEqual(orchestrator.announcement.listen, "")
        self.assertEqual(orchestrator.listen_reactor.tcpServers, [])
        self.assertEqual(orchestrator.listen_reactor.unixServers, [])
        self.assertIsNone(module.service.port)
        self.assertEqual(module.service.health_status()["listen"], "")
        for via in ("stdio", "tcp", "ipc"):
            response = self.successResultOf(module.request("GET", "/ping", via=via))
            self.assertEqual(response.json(), {"pong": True}, via)

    def test_definition(self) -> None:
        orchestrator, module = self.start(pywatt_module(ipc_only=True)(create_app))
        self.assert_ipc_only(orchestrator, module)

    def test_config(self) -> None:
        orchestrator, module = self.start(
            pywatt_module(create_app), config=RuntimeConfig(ipc_only=True)
        )
        self.assert_ipc_only(orchestrator, module)

    def test_init_blob(self) -> None:
        orchestrator, module = self.start(pywatt_module(create_app), blob_ipc_only=True)
        self.assert_ipc_only(orchestrator, module)

    def test_no_port_is_asked_for(self) -> None:
        # Without a listen address a normal module asks the orchestrator for a port; an
        # IPC-only one does not.
        orchestrator, module = self.start(pywatt_module(ipc_only=True)(create_app), listen=None)
        self.assertFalse([m for m in orchestrator.sent if isinstance(m, PortRequest)])
        self.assert_ipc_only(orchestrator, module)

    def test_off_by_default(self) -> None:
        orchestrator, _ = self.start(pywatt_module(create_app))
        assert orchestrator.announcement is not None
        self.assertNotEqual(orchestrator.announcement.listen, "")
        self.assertEqual(len(orchestrator.listen_reactor.tcpServers), 1)

    def test_stop(self) -> None:
        orchestrator, _ = self.start(pywatt_module(ipc_only=True)(create_app))
        self.successResultOf(orchestrator.shutdown())
        self.assertEqual(orchestrator.exit_codes, [0])

    def test_definition_checked(self) -> None:
        with self.assertRaises(ConfigurationError):
            pywatt_module(ipc_only="yes")  # type: ignore[arg-type]


class IpcOnlySettingTests(SynchronousTestCase):
    def test_environment(self) -> None:
        for environ in ({"PYWATT_IPC_ONLY": "1"}, {"IPC_ONLY": "true"}, {"IPC_ONLY": "1"}):
            self.assertTrue(RuntimeConfig.from_environment(environ).ipc_only, environ)
        for environ in ({}, {"PYWATT_IPC_ONLY": "0"}, {"IPC_ONLY": "false"}, {"IPC_ONLY": ""}):
            self.assertFalse(RuntimeConfig.from_environment(environ).ipc_only, environ)

    def test_our_variable_wins(self) -> None:
        config = RuntimeConfig.from_environment({"PYWATT_IPC_ONLY": "0", "IPC_ONLY": "1"})
        self.assertFalse(config.ipc_only)

    def test_option_wins(self) -> None:
        config = RuntimeConfig.from_environment({"IPC_ONLY": "1"}, ipc_only="0")
        self.assertFalse(config.ipc_only)
        self.assertTrue(RuntimeConfig.from_environment({}, **{"ipc-only": "on"}).ipc_only)

    def test_bad_value_names_the_variable(self) -> None:
        with self.assertRaises(ConfigurationError) as caught:
            RuntimeConfig.from_environment({"IPC_ONLY": "maybe"})
        self.assertIn("IPC_ONLY", str(caught.exception))

    def test_twistd_option(self) -> None:
        (row,) = [r for r in option_parameters() if r[0] == "ipc-only"]
        self.assertIn("$PYWATT_IPC_ONLY", row[3])
        self.assertIn("default off", row[3])


class InitBlobTests(SynchronousTestCase):
    BASE = b'{"orchestrator_api":"http://127.0.0.1:9900","module_id":"m","env":{},"listen":"127.0.0.1:1"'

    def test_decoded(self) -> None:
        self.assertTrue(decode_init(self.BASE + b',"ipc_only":true}').ipc_only)
        self.assertFalse(decode_init(self.BASE + b"}").ipc_only)

    def test_emitted_only_when_set(self) -> None:
        blob = decode_init(self.BASE + b"}")
        self.assertNotIn(b"ipc_only", encode_init(blob))
        self.assertIn(b'"ipc_only":true', encode_init(evolve(blob, ipc_only=True)))

    def test_not_a_boolean(self) -> None:
        from pywatt_twisted.errors import ProtocolError

        with self.assertRaises(ProtocolError):
            decode_init(self.BASE + b',"ipc_only":"yes"}')
