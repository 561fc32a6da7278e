"""
Tests for L{pywatt_twisted.data._database._params}: C{:name} -> driver placeholders.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pywatt_twisted.data._database import ParameterError, translate
from pywatt_twisted.errors import DataError


class TranslateTests(SynchronousTestCase):
    def test_pyformat(self) -> None:
        for dialect in ("postgresql", "mysql"):
            t = translate("SELECT * FROM t WHERE a = :a AND b = :b_2 OR a = :a", dialect)
            self.assertEqual(t.sql, "SELECT * FROM t WHERE a = %(a)s AND b = %(b_2)s OR a = %(a)s")
            self.assertEqual(t.names, ("a", "b_2", "a"))

    def test_sqlite_native(self) -> None:
        sql = "SELECT * FROM t WHERE a = :a AND b LIKE '50%'"
        t = translate(sql, "sqlite")
        self.assertEqual(t.sql, sql)
        self.assertEqual(t.names, ("a",))

    def test_percent_escaped(self) -> None:
        t = translate("SELECT 'a%b', 5 % 2 -- 10%\n", "postgresql")
        self.assertEqual(t.sql, "SELECT 'a%%b', 5 %% 2 -- 10%%\n")

    def test_cast_untouched(self) -> None:
        t = translate("SELECT :v::int, x::text, a:::b", "postgresql")
        self.assertEqual(t.sql, "SELECT %(v)s::int, x::text, a:::b")
        self.assertEqual(t.names, ("v",))

    def test_literals_and_comments_untouched(self) -> None:
        sql = (
            "SELECT ':no', 'it''s :no', \":no\", $$ :no $$, $t$ :no $t$, E'\\' :no', "
            "/* :no */ :yes -- :no\n"
        )
        t = translate(sql, "postgresql")
        self.assertEqual(t.names, ("yes",))
        self.assertIn("%(yes)s", t.sql)
        self.assertIn("$t$ :no $t$", t.sql)

    def test_mysql_backslash_and_backtick(self) -> None:
        t = translate("SELECT 'a\\' :no', `:no`, :yes # :no\n", "mysql")
        self.assertEqual(t.names, ("yes",))
        self.assertEqual(t.sql, "SELECT 'a\\' :no', `:no`, %(yes)s # :no\n")

    def test_not_placeholders(self) -> None:
        t = translate("SET @a := 1; SELECT arr[1:2], :", "mysql")
        self.assertEqual(t.names, ())

    def test_postgres_positional_dollar(self) -> None:
        t = translate("SELECT $1, :a", "postgresql")
        self.assertEqual(t.sql, "SELECT $1, %(a)s")

    def test_unterminated(self) -> None:
        for sql in ("SELECT 'abc", 'SELECT "abc', "SELECT /* x", "SELECT $$ x"):
            with self.assertRaises(ParameterError) as c:
                translate(sql, "postgresql")
            self.assertIn("closed", str(c.exception))

    def test_unknown_dialect(self) -> None:
        self.assertRaises(ParameterError, translate, "SELECT 1", "oracle")

    def test_bind_missing(self) -> None:
        t = translate("SELECT :a, :b, :c", "postgresql")
        with self.assertRaises(ParameterError) as c:
            t.bind({"a": "secret-value"})
        message = str(c.exception)
        self.assertIn(":b", message)
        self.assertIn(":c", message)
        self.assertNotIn("secret-value", message)
        self.assertIsInstance(c.exception, DataError)

    def test_bind_not_mapping(self) -> None:
        with self.assertRaises(ParameterError) as c:
            translate("SELECT :a", "mysql").bind([1])  # type: ignore[arg-type]
        self.assertIn("mapping", str(c.exception))

    def test_bind_none_is_empty_dict(self) -> None:
        self.assertEqual(translate("SELECT 1", "mysql").bind(None), {})

    def test_bind_returns_a_dict_copy(self) -> None:
        """
        Whatever mapping is given (a dict, a subclass, any Mapping), the driver gets a
        new plain dict with every given value, extra names included; the caller's
        mapping is never the one handed on.
        """
        from collections import OrderedDict
        from types import MappingProxyType

        t = translate("SELECT :a, :b, :a", "postgresql")
        for mapping in (
            {"a": 1, "b": 2, "extra": 3},
            OrderedDict(a=1, b=2, extra=3),
            MappingProxyType({"a": 1, "b": 2, "extra": 3}),
        ):
            bound = t.bind(mapping)
            self.assertIs(type(bound), dict)
            self.assertIsNot(bound, mapping)
            self.assertEqual(bound, {"a": 1, "b": 2, "extra": 3})
        with self.assertRaises(ParameterError):
            t.bind({"b": 2})


# hypothesis: build statements from fragments whose translation is known

_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abz_"),
    st.text(alphabet="az09_", max_size=6),
)
_plain = st.text(alphabet="abc XYZ019(),=<>*+%;\n", min_size=1, max_size=8)
_inside = st.text(alphabet='ab :%x_-*/"$', max_size=8)


@st.composite
def _fragments(draw: st.DrawFn) -> list[tuple[str, str, str, str | None]]:
    """
    A list of (original, expected pyformat, expected sqlite, name or None).
    """
    out = []
    for kind in draw(st.lists(st.sampled_from(["plain", "param", "lit", "cast", "comment"]))):
        if kind == "plain":
            text = draw(_plain)
            out.append((text, text.replace("%", "%%"), text, None))
        elif kind == "param":
            name = draw(_names)
            out.append((f" :{name} ", f" %({name})s ", f" :{name} ", name))
        elif kind == "lit":
            body = draw(_inside).replace("'", "''")
            text = f" '{body}' "
            out.append((text, text.replace("%", "%%"), text, None))
        elif kind == "cast":
            out.append(("::int ", "::int ", "::int ", None))
        else:
            body = draw(_inside).replace("*/", "")
            text = f" /*{body}*/ "
            out.append((text, text.replace("%", "%%"), text, None))
    return out


class TranslateProperties(SynchronousTestCase):
    @given(_fragments())
    def test_fragments(self, fragments: list[tuple[str, str, str, str | None]]) -> None:
        sql = "".join(f[0] for f in fragments)
        names = tuple(f[3] for f in fragments if f[3] is not None)
        pg = translate(sql, "postgresql")
        self.assertEqual(pg.sql, "".join(f[1] for f in fragments))
        self.assertEqual(pg.names, names)
        lite = translate(sql, "sqlite")
        self.assertEqual(lite.sql, "".join(f[2] for f in fragments))
        self.assertEqual(lite.names, names)

    @given(_fragments())
    def test_pyformat_round_trip(self, fragments: list[tuple[str, str, str, str | None]]) -> None:
        """
        What the driver does with the translation (C{%} formatting) gives back the
        original statement with each placeholder replaced by its value.
        """
        sql = "".join(f[0] for f in fragments)
        t = translate(sql, "mysql")
        values = {name: f"<{name}>" for name in t.names}
        expected = "".join(f" <{f[3]}> " if f[3] is not None else f[0] for f in fragments)
        self.assertEqual(t.sql % values, expected)

    @given(st.text(max_size=60))
    def test_never_crashes_unexpectedly(self, sql: str) -> None:
        for dialect in ("postgresql", "mysql", "sqlite"):
            try:
                t = translate(sql, dialect)
            except ParameterError:
                continue
            if dialect != "sqlite":
                # the driver's % formatting must accept the result
                t.sql % {n: "v" for n in t.names}
