"""
A stand-in module process for L{tests.dev.test_proxied_services}: C{pywatt dev} spawns
it as C{twistd -n pywatt --module=tests.dev.relay_module}; importing it (before the
runtime claims stdout) with C{PYWATT_TEST_RELAY=<unix socket path>} set connects to
that socket and copies bytes both ways, stdin to the socket and the socket to stdout,
until either side ends. The test process behind the socket runs the real module
runtime, so it talks to the real C{pywatt dev} over the real stdio protocol while the
test holds the module's objects (its proxied database and cache) in its own process.
"""

from __future__ import annotations

import os
import selectors
import socket

from klein import Klein

from pywatt_twisted import pywatt_module


def _relay(path: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj == 0:
                data = os.read(0, 65536)
                if not data:
                    sock.shutdown(socket.SHUT_WR)
                    selector.unregister(0)
                    continue
                sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    os._exit(0)
                view = memoryview(data)
                while view:
                    view = view[os.write(1, view) :]


_path = os.environ.get("PYWATT_TEST_RELAY")
if _path:
    _relay(_path)


@pywatt_module()
def create_app(state: object) -> Klein:
    return Klein()
