"""
The uploads module: large files in and out in constant memory.

  - ``PUT /files/<name>`` stores the request body, read with ``body_stream`` while it
    arrives (the route is marked ``@incremental_body``): each chunk is acknowledged to
    the orchestrator only once it is written, so a slow disk slows the upload instead
    of filling memory. It answers the size and sha256 of what it stored.
  - ``GET /files/<name>`` sends the file back with twisted's ``FileSender``: a
    producer the module pauses while the orchestrator's window is full.

Files go to ``$UPLOAD_DIR`` (a new temporary directory by default).

    pywatt dev --module=examples.uploads.module
    curl -T big.iso http://127.0.0.1:8080/uploads/files/big.iso
    curl -o copy.iso http://127.0.0.1:8080/uploads/files/big.iso
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile

from klein import Klein
from twisted.protocols.basic import FileSender

from pywatt_twisted import pywatt_module
from pywatt_twisted.streaming import body_stream, incremental_body

_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


@pywatt_module(secrets=[])
def create_app(state):
    app = Klein()
    directory = os.environ.get("UPLOAD_DIR") or tempfile.mkdtemp(prefix="uploads-")

    def path_of(request, name):
        if not _NAME.fullmatch(name) or name.startswith("."):
            request.setResponseCode(400)
            return None
        return os.path.join(directory, name)

    @app.route("/files/<name>", methods=["PUT", "POST"])
    @incremental_body
    async def store(request, name):
        path = path_of(request, name)
        if path is None:
            return {"error": "bad file name"}
        digest = hashlib.sha256()
        size = 0
        with open(path + ".part", "wb") as out:
            async for piece in body_stream(request):
                out.write(piece)
                digest.update(piece)
                size += len(piece)
        os.replace(path + ".part", path)
        return {"name": name, "size": size, "sha256": digest.hexdigest()}

    @app.route("/files/<name>", methods=["GET"])
    def fetch(request, name):
        path = path_of(request, name)
        if path is None or not os.path.isfile(path):
            request.setResponseCode(404 if path else 400)
            return {"error": "no such file"}
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % os.path.getsize(path))
        f = open(path, "rb")  # (closed when the transfer ends)
        d = FileSender().beginFileTransfer(f, request)

        def done(result):
            f.close()
            return None  # (Klein then finishes the request)

        return d.addBoth(done)

    return app
