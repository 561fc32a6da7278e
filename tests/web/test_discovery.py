"""
Tests for L{pywatt_twisted.web.discovery}: the announced endpoints are the routes the
Klein app really has.
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from klein import Klein
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from pywatt_twisted.errors import ConfigurationError
from pywatt_twisted.web.discovery import (
    AUTH_ATTRIBUTE,
    KLEIN_DEFAULT_METHODS,
    announced_path,
    auth_of,
    discover_endpoints,
    mark_auth,
)
from pywatt_twisted.wire.messages import Endpoint


def view(request: Any) -> bytes:
    return b""


def shapes(endpoints: list[Endpoint]) -> list[tuple[str, tuple[str, ...], str | None]]:
    return [(e.path, tuple(e.methods), e.auth) for e in endpoints]


def bare(app: Any) -> list[tuple[str, tuple[str, ...], str | None]]:
    return shapes(discover_endpoints(app, health_path=None, metrics=False))


class ConverterTests(SynchronousTestCase):
    def test_converters(self) -> None:
        app = Klein()
        app.route("/items/<int:item_id>", methods=["GET"])(view)
        app.route("/users/<name>", methods=["GET"], endpoint="users")(view)
        app.route("/files/<path:rest>", methods=["GET"], endpoint="files")(view)
        app.route("/codes/<string(length=2):code>/x", methods=["GET"], endpoint="codes")(view)
        app.route("/a/<int:a>/b/<float:b>", methods=["GET"], endpoint="ab")(view)
        self.assertEqual(
            [path for path, _, _ in bare(app)],
            ["/a/:a/b/:b", "/codes/:code/x", "/files/:rest", "/items/:item_id", "/users/:name"],
        )

    def test_announced_path(self) -> None:
        self.assertEqual(announced_path("/"), "/")
        self.assertEqual(announced_path("/x/<any(a,b):kind>"), "/x/:kind")
        self.assertEqual(announced_path("/static/<path:__rest__>"), "/static")
        self.assertEqual(announced_path("/<path:__rest__>"), "/")

    @given(
        st.lists(
            st.one_of(
                st.from_regex(r"[a-z0-9._-]{1,8}", fullmatch=True),
                st.tuples(
                    st.sampled_from(["", "int:", "path:", "string(length=2):", "uuid:"]),
                    st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
                ),
            ),
            min_size=1,
            max_size=6,
        )
    )
    def test_any_rule(self, parts: list[Any]) -> None:
        """
        Every converter becomes C{:name}; literal segments are kept as they are.
        """
        rule = "".join("/" + (p if isinstance(p, str) else f"<{p[0]}{p[1]}>") for p in parts)
        expected = "".join("/" + (p if isinstance(p, str) else ":" + p[1]) for p in parts)
        self.assertEqual(announced_path(rule), expected)


class MethodTests(SynchronousTestCase):
    def test_upper_case_sorted_without_implicit_head(self) -> None:
        app = Klein()
        app.route("/x", methods=["post", "get", "Delete"])(view)
        self.assertEqual(bare(app), [("/x", ("DELETE", "GET", "POST"), None)])

    def test_head_alone_is_kept(self) -> None:
        app = Klein()
        app.route("/h", methods=["HEAD"])(view)
        self.assertEqual(bare(app), [("/h", ("HEAD",), None)])

    def test_no_methods_means_klein_default(self) -> None:
        app = Klein()
        app.route("/any")(view)
        self.assertEqual(bare(app), [("/any", KLEIN_DEFAULT_METHODS, None)])
        self.assertEqual(list(KLEIN_DEFAULT_METHODS), sorted(KLEIN_DEFAULT_METHODS))

    def test_merged_rules(self) -> None:
        app = Klein()

        @app.route("/things", methods=["GET"])
        def list_things(request: Any) -> bytes:
            return b""

        @app.route("/things", methods=["POST"])
        def add_thing(request: Any) -> bytes:
            return b""

        @app.route("/things/<int:thing_id>", methods=["GET"])
        def one(request: Any, thing_id: int) -> bytes:
            return b""

        @app.route("/things/<int:thing_id>", methods=["PUT", "GET"])
        def replace(request: Any, thing_id: int) -> bytes:
            return b""

        self.assertEqual(
            bare(app),
            [("/things", ("GET", "POST"), None), ("/things/:thing_id", ("GET", "PUT"), None)],
        )

    def test_deterministic_order(self) -> None:
        paths = ["/zeta", "/alpha", "/mid/<x>", "/alpha/beta", "/b"]
        first, second = Klein(), Klein()
        for name, path in enumerate(paths):
            first.route(path, methods=["GET"], endpoint=f"e{name}")(view)
        for name, path in enumerate(reversed(paths)):
            second.route(path, methods=["GET"], endpoint=f"e{name}")(view)
        self.assertEqual(bare(first), bare(second))
        self.assertEqual(
            [p for p, _, _ in bare(first)], ["/alpha", "/alpha/beta", "/b", "/mid/:x", "/zeta"]
        )


class StructureTests(SynchronousTestCase):
    def test_branch_announces_the_prefix(self) -> None:
        app = Klein()
        app.route("/static", methods=["GET"], branch=True)(view)
        self.assertEqual(bare(app), [("/static", ("GET",), None)])

    def test_root_branch(self) -> None:
        app = Klein()
        app.route("/", branch=True)(view)
        self.assertEqual(bare(app), [("/", KLEIN_DEFAULT_METHODS, None)])

    def test_subroute_prefix(self) -> None:
        app = Klein()
        with app.subroute("/api/v1") as api:
            api.route("/items/<int:i>", methods=["GET"])(view)
        self.assertEqual(bare(app), [("/api/v1/items/:i", ("GET",), None)])

    def test_klein_resource_is_introspected(self) -> None:
        app = Klein()
        app.route("/r", methods=["GET"])(view)
        self.assertEqual(bare(app.resource()), [("/r", ("GET",), None)])

    def test_plain_resource_gives_only_builtins(self) -> None:
        root = Resource()
        root.putChild(b"x", Resource())
        self.assertEqual(
            shapes(discover_endpoints(root)),
            [("/health", ("GET",), None), ("/metrics", ("GET",), None)],
        )
        self.assertEqual(discover_endpoints(root, health_path=None, metrics=False), [])

    def test_builtins_after_routes_and_configurable(self) -> None:
        app = Klein()
        app.route("/a", methods=["GET"])(view)
        self.assertEqual(
            shapes(discover_endpoints(app, health_path="/healthz", metrics=False)),
            [("/a", ("GET",), None), ("/healthz", ("GET",), None)],
        )
        self.assertEqual(
            shapes(discover_endpoints(app, health_path=None)),
            [("/a", ("GET",), None), ("/metrics", ("GET",), None)],
        )

    def test_builtins_not_duplicated(self) -> None:
        app = Klein()
        app.route("/metrics", methods=["GET"], endpoint="m")(view)
        app.route("/health", methods=["POST"], endpoint="h")(view)
        self.assertEqual(
            shapes(discover_endpoints(app)),
            [("/health", ("GET", "POST"), None), ("/metrics", ("GET",), None)],
        )

    def test_returns_wire_endpoints(self) -> None:
        app = Klein()
        app.route("/a", methods=["GET"])(view)
        (endpoint, *_) = discover_endpoints(app)
        self.assertEqual(endpoint, Endpoint(path="/a", methods=("GET",), auth=None))


class AuthTests(SynchronousTestCase):
    def test_marker_set_before_route(self) -> None:
        app = Klein()

        @app.route("/secure", methods=["GET"])
        @functools.partial(mark_auth, scheme="jwt")
        def secure(request: Any) -> bytes:
            return b""

        self.assertEqual(bare(app), [("/secure", ("GET",), "jwt")])

    def test_marker_set_after_route(self) -> None:
        app = Klein()

        def secure(request: Any) -> bytes:
            return b""

        mark_auth(app.route("/secure", methods=["GET"])(secure), "jwt")
        self.assertEqual(bare(app), [("/secure", ("GET",), "jwt")])

    def test_marker_through_wraps(self) -> None:
        def guarded(request: Any) -> bytes:
            return b""

        mark_auth(guarded, "jwt")

        @functools.wraps(guarded)
        def wrapper(request: Any) -> bytes:
            return guarded(request)

        del wrapper.__dict__[AUTH_ATTRIBUTE]  # only reachable through __wrapped__
        self.assertEqual(auth_of(wrapper), "jwt")
        self.assertIsNone(auth_of(view))
        self.assertIsNone(auth_of(None))

    def test_different_auth_same_path_not_merged(self) -> None:
        app = Klein()
        app.route("/doc", methods=["GET"], endpoint="read")(view)

        def write(request: Any) -> bytes:
            return b""

        app.route("/doc", methods=["PUT"], endpoint="write")(mark_auth(write, "jwt"))
        self.assertEqual(bare(app), [("/doc", ("GET",), None), ("/doc", ("PUT",), "jwt")])

    def test_mark_auth_rejects_empty(self) -> None:
        self.assertRaises(ConfigurationError, mark_auth, view, "")
        self.assertRaises(ConfigurationError, mark_auth, view, None)
        self.assertFalse(hasattr(view, AUTH_ATTRIBUTE))

    def test_mark_auth_returns_the_function(self) -> None:
        def f(request: Any) -> bytes:
            return b""

        self.assertIs(mark_auth(f, "jwt"), f)
        self.assertEqual(getattr(f, AUTH_ATTRIBUTE), "jwt")
