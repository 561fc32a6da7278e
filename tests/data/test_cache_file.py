"""
L{FileStore}'s file names, headers and temporary files, called in the test's thread (its
pool-thread functions take the time as their first argument).
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import stat

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

# (the package exports names of the same spelling as some of its modules)
file_module = importlib.import_module("pywatt_twisted.data._cache.file")
FileStore = file_module.FileStore

KEYS = ["k", "ns:key", 'quote " and \\ backslash', "unicode \u00e9\u2603 \U0001f600", "tab\tend"]


def old_header(key: str, expires: object) -> bytes:
    """
    The header as the store has always written it.
    """
    return json.dumps({"k": key, "e": expires}, separators=(",", ":")).encode()


class FileStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        self.store = FileStore(self.directory, clock=task.Clock())

    def contents(self, key: str) -> bytes:
        with open(self.store._path(key), "rb") as f:
            return f.read()

    def test_file_bytes_unchanged(self) -> None:
        """
        The file of every key and expiry (none, a float, an integer) has the bytes of
        C{json.dumps} of its header, then the value.
        """
        for key in KEYS:
            for expires in (None, 1_700_000_000.25, 0.1 + 0.2, 12):
                self.store._write(key, b"value\nwith newline", expires)
                self.assertEqual(
                    self.contents(key), old_header(key, expires) + b"\nvalue\nwith newline"
                )

    def test_file_name_unchanged(self) -> None:
        """
        A key's file is named by the SHA-256 of the key.
        """
        import hashlib

        for key in KEYS:
            digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
            self.assertEqual(
                self.store._path(key),
                os.path.join(os.path.abspath(self.directory), digest + ".entry"),
            )

    def test_reads_any_header_of_the_key(self) -> None:
        """
        A file whose header is not the one this store writes for "this key, no expiry"
        (other JSON spelling, an expiry) is read by parsing it; one of another key, a
        torn one and an expired one read as missing (the expired one is removed).
        """
        path = self.store._path("k")
        for raw, expected in [
            (b'{"e":null,"k":"k"}\nv1', b"v1"),
            (b'{"k": "k", "e": null}\nv2', b"v2"),
            (b'{"k":"\\u006b","e":null}\nv3', b"v3"),
            (old_header("k", 100.0) + b"\nv4", b"v4"),
            (old_header("other", None) + b"\nv5", None),
            (b'{"k":"k","e":nu', None),
            (b"", None),
        ]:
            with open(path, "wb") as f:
                f.write(raw)
            self.assertEqual(self.store._get(50.0, "k"), expected, raw)
        with open(path, "wb") as f:
            f.write(old_header("k", 100.0) + b"\nv6")
        self.assertIsNone(self.store._get(100.0, "k"))
        self.assertFalse(os.path.exists(path))

    def test_names_bounded(self) -> None:
        """
        The store remembers at most L{file_module.NAMES} keys' names; a forgotten key
        is named again.
        """
        for i in range(file_module.NAMES + 10):
            self.store._write(f"k{i}", b"x", None)
            self.assertLessEqual(len(self.store._names), file_module.NAMES)
        for i in (0, file_module.NAMES + 9):
            self.assertEqual(self.store._get(0.0, f"k{i}"), b"x")

    def test_temporary_file(self) -> None:
        """
        A temporary file is created new (never an existing one: the next number is
        tried) with mode 0600, and named after this process.
        """
        self.patch(file_module, "_numbers", itertools.count(7))
        pid = os.getpid()
        taken = os.path.join(self.store.directory, f".tmp-{pid}-7")
        with open(taken, "wb") as f:
            f.write(b"left over")
        fd, path = self.store._temporary()
        os.close(fd)
        self.assertEqual(path, os.path.join(self.store.directory, f".tmp-{pid}-8"))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(taken, "rb") as f:
            self.assertEqual(f.read(), b"left over")

    def test_temporary_file_falls_back_to_mkstemp(self) -> None:
        """
        When every numbered name is taken, the file comes from C{tempfile.mkstemp}.
        """
        self.patch(file_module, "_numbers", itertools.repeat(7))
        open(os.path.join(self.store.directory, f".tmp-{os.getpid()}-7"), "wb").close()
        fd, path = self.store._temporary()
        os.close(fd)
        name = os.path.basename(path)
        self.assertTrue(name.startswith(".tmp-"), name)
        self.assertNotEqual(name, f".tmp-{os.getpid()}-7")

    def test_no_temporary_file_left(self) -> None:
        """
        A write leaves only the key's file; a failed one leaves nothing.
        """
        self.store._write("k", b"v", None)
        self.assertEqual(
            os.listdir(self.store.directory), [os.path.basename(self.store._path("k"))]
        )

        def refuse(src: str, dst: str) -> None:
            raise OSError("refused")

        self.patch(file_module.os, "replace", refuse)
        self.assertRaises(OSError, self.store._write, "other", b"v", None)
        self.assertEqual(
            os.listdir(self.store.directory), [os.path.basename(self.store._path("k"))]
        )

    def test_large_value(self) -> None:
        """
        A value longer than one read comes back whole, with or without an expiry.
        """
        big = bytes(range(256)) * (3 * file_module._CHUNK // 256 + 7)
        for expires in (None, 100.0):
            self.store._write("big", big, expires)
            self.assertEqual(self.store._get(0.0, "big"), big)

    def test_short_writes(self) -> None:
        """
        A file that C{os.write} takes a few bytes at a time is written whole.
        """
        write = os.write
        calls = []

        def short(fd: int, data: bytes) -> int:
            calls.append(fd)
            return write(fd, bytes(data[:7]))

        self.patch(file_module.os, "write", short)
        self.store._write("k", b"a value of some length", None)
        self.assertGreater(len(calls), 3)
        self.assertEqual(self.contents("k"), old_header("k", None) + b"\na value of some length")

    def test_fsync(self) -> None:
        """
        With C{fsync}, the temporary file is synced before it replaces the key's file.
        """
        synced: list[bytes] = []
        fsync = os.fsync

        def recording(fd: int) -> None:
            with open(f"/proc/self/fd/{fd}", "rb") as f:
                synced.append(f.read())
            fsync(fd)

        self.patch(file_module.os, "fsync", recording)
        self.store._write("k", b"v", None)
        self.assertEqual(synced, [])
        self.store.fsync = True
        self.store._write("k", b"v2", None)
        self.assertEqual(synced, [old_header("k", None) + b"\nv2"])
