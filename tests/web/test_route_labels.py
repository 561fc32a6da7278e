"""
Tests for how L{pywatt_twisted.web._route_values._RouteValues} notes the rule Klein
matched (the metrics' route label): the per-endpoint rule table read directly gives
what C{url_map.iter_rules()} gives, rules added later included, and the forwarded
attributes KleinResource reads are the app's.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.web._route_values import MATCHED_RULE_ATTRIBUTE, _RouteValues


class _Request:
    pass


def noted(values: _RouteValues, endpoint: str) -> str | None:
    request = _Request()
    values._note_rule(endpoint, request)
    return getattr(request, MATCHED_RULE_ATTRIBUTE, None)


class _IterRulesOnly:
    """
    A map with C{iter_rules} and no per-endpoint table (the fallback path).
    """

    def __init__(self, real: Any) -> None:
        self._real = real

    def iter_rules(self, endpoint: Any = None) -> Any:
        return self._real.iter_rules(endpoint)


def app_with_routes() -> Klein:
    app = Klein()

    @app.route("/items/<int:item_id>")
    def item(request: Any, item_id: int) -> bytes:
        return b""

    @app.route("/files", branch=True)
    def files(request: Any) -> bytes:
        return b""

    return app


class NoteRuleTests(SynchronousTestCase):
    def test_single_rule_noted_unknown_not(self) -> None:
        values = _RouteValues(app_with_routes())
        self.assertEqual(noted(values, "item"), "/items/:item_id")
        self.assertEqual(noted(values, "files"), "/files")
        self.assertIsNone(noted(values, "unknown"))

    def test_same_labels_through_iter_rules(self) -> None:
        app = app_with_routes()
        fast = _RouteValues(app)
        slow = _RouteValues(app)
        slow._pywatt_app = _SlowApp(app)
        for endpoint in ("item", "files", "unknown"):
            self.assertEqual(noted(fast, endpoint), noted(slow, endpoint), endpoint)
        self.assertEqual(noted(slow, "item"), "/items/:item_id")

    def test_rule_added_later_is_seen(self) -> None:
        app = app_with_routes()
        values = _RouteValues(app)
        self.assertEqual(noted(values, "item"), "/items/:item_id")
        app.route("/things/<int:item_id>", endpoint="item")(lambda request, item_id: b"")
        self.assertIsNone(noted(values, "item"))  # now two rules

        def extra(request: Any) -> bytes:
            return b""

        app.route("/extra")(extra)
        self.assertEqual(noted(values, "extra"), "/extra")


class _SlowApp:
    def __init__(self, app: Klein) -> None:
        self.url_map = _IterRulesOnly(app.url_map)


class ForwardedAttributeTests(SynchronousTestCase):
    def test_klein_resource_reads_the_apps_own(self) -> None:
        app = app_with_routes()
        values = _RouteValues(app)
        self.assertIs(values.url_map, app.url_map)
        self.assertIs(values.endpoints, app.endpoints)
        self.assertIs(values._error_handlers, app._error_handlers)
        self.assertEqual(values.endpoints["item"], app.endpoints["item"])

    def test_missing_attribute_still_raises(self) -> None:
        values = _RouteValues(object())
        self.assertRaises(AttributeError, lambda: values.url_map)
        self.assertRaises(AttributeError, lambda: values._error_handlers)
