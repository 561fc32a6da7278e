# -*- test-case-name: tests.data.test_params -*-
"""
Translate the one parameter style authors write (named C{:name} placeholders) into the
style each driver wants.

    - PostgreSQL (psycopg 3) and MySQL/MariaDB (PyMySQL) use C{%(name)s}; every literal
      C{%} in the statement (including inside string literals and comments) is doubled,
      because both drivers apply C{%} formatting to the whole statement text.
    - SQLite (sqlite3) understands C{:name} natively: the text is passed unchanged.

What is I{not} a placeholder: C{::} (PostgreSQL casts, C{x::int}), C{:=} (MySQL
assignment), a C{:} followed by a digit (array slices), and any C{:name} inside a string
literal (C{'...'}, PostgreSQL C{E'...'} and C{$tag$...$tag$}), a quoted identifier
(C{"..."}, MySQL C{`...`}) or a comment (C{-- ...}, C{/* ... */}, MySQL C{# ...}).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import attrs

from pywatt_twisted.data._database._errors import DatabaseError

#: dialects the translator knows
DIALECTS = ("postgresql", "mysql", "sqlite")


class ParameterError(DatabaseError):
    """
    A statement and its parameters do not fit together (a placeholder without a value,
    parameters that are not a mapping). The message names the parameters, never values.
    """


@attrs.frozen
class TranslatedStatement:
    """
    A statement ready for one driver.

    @ivar sql: the text to hand to the driver.
    @ivar names: the placeholder names in order of appearance (repeats included).
    """

    sql: str
    names: tuple[str, ...]

    def bind(self, params: Mapping[str, object] | None) -> dict[str, object]:
        """
        Check that every placeholder has a value and return the parameters as a C{dict}
        the driver accepts (always a dict, even when empty, so C{%%} is unescaped the
        same way by every pyformat driver).

        @raise ParameterError: when C{params} is not a mapping or lacks a name.
        """
        if params.__class__ is dict:
            # (the common case, checked without the ABC and without building a set)
            for name in self.names:
                if name not in params:  # type: ignore[operator]
                    break
            else:
                return dict(params)  # type: ignore[arg-type]
        if params is None:
            params = {}
        elif not isinstance(params, Mapping):
            raise ParameterError(
                "expected the parameters as a mapping of name -> value for :name "
                f"placeholders, got {type(params).__name__}; pass a dict such as "
                "{'name': value}"
            )
        missing = sorted({n for n in self.names if n not in params})
        if missing:
            given = ", ".join(sorted(map(str, params))) or "none"
            raise ParameterError(
                "the statement uses placeholder(s) "
                + ", ".join(f":{n}" for n in missing)
                + f" but the parameters have no value for them (given: {given}); "
                "add them to the params mapping"
            )
        return dict(params)


def _is_name_start(c: str) -> bool:
    return c.isalpha() or c == "_"


def _is_name_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _dollar_tag(sql: str, i: int) -> str | None:
    """
    The PostgreSQL dollar-quote tag starting at C{sql[i] == "$"} (C{"$$"}, C{"$body$"}),
    or None when this C{$} does not open one (C{$1} positional parameters, say).
    """
    j = i + 1
    n = len(sql)
    while j < n and sql[j] != "$":
        if not (_is_name_char(sql[j]) and not (j == i + 1 and sql[j].isdigit())):
            return None
        j += 1
    if j >= n:
        return None
    return sql[i : j + 1]


def _unterminated(what: str, start: int) -> ParameterError:
    return ParameterError(
        f"expected the {what} that starts at character {start} of the statement to "
        "be closed, but the statement ended first; close it"
    )


def _string_end(sql: str, i: int, dialect: str) -> int:
    """
    The end of the string literal at C{i} (C{'...'}, or a PostgreSQL C{E'...'}):
    C{''} is an escaped quote; a backslash escapes in MySQL strings and C{E''} strings.
    """
    backslash = dialect == "mysql" or sql[i] != "'"
    j = i + (1 if sql[i] == "'" else 2)
    n = len(sql)
    while True:
        if j >= n:
            raise _unterminated("string literal", i)
        if backslash and sql[j] == "\\":
            j += 2
            continue
        if sql[j] == "'":
            if j + 1 < n and sql[j + 1] == "'":
                j += 2
                continue
            return j + 1
        j += 1


def _identifier_end(sql: str, i: int) -> int:
    """
    The end of the quoted identifier at C{i} (C{"..."} or C{`...`}, the quote doubled to
    escape it).
    """
    quote = sql[i]
    j = i + 1
    n = len(sql)
    while True:
        if j >= n:
            raise _unterminated("quoted identifier", i)
        if sql[j] == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1


def _colon_end(sql: str, i: int) -> tuple[int, bool]:
    """
    The end of what starts with the C{:} at C{i}, and whether it is a C{:name}
    placeholder (a run of colons, as in a cast C{x::int}, never is).
    """
    n = len(sql)
    j = i + 1
    if j < n and sql[j] == ":":
        while j < n and sql[j] == ":":
            j += 1
        return j, False
    if j < n and _is_name_start(sql[j]):
        while j < n and _is_name_char(sql[j]):
            j += 1
        return j, True
    return j, False


def _token_end(sql: str, i: int, dialect: str) -> tuple[int, bool]:
    """
    The end of the token that starts at C{sql[i]} (a string, quoted identifier, comment,
    dollar-quoted string, colon run or run of ordinary text), and whether it is a
    placeholder.

    @raise ParameterError: on an unterminated string, identifier or comment.
    """
    c = sql[i]
    n = len(sql)
    after_name = i > 0 and _is_name_char(sql[i - 1])
    if c == "'" or (
        c in "eE" and dialect == "postgresql" and sql.startswith("'", i + 1) and not after_name
    ):
        return _string_end(sql, i, dialect), False
    if c == '"' or (c == "`" and dialect in ("mysql", "sqlite")):
        return _identifier_end(sql, i), False
    if (c == "-" and sql.startswith("--", i)) or (c == "#" and dialect == "mysql"):
        j = sql.find("\n", i)
        return (n if j == -1 else j + 1), False
    if c == "/" and sql.startswith("/*", i):
        j = sql.find("*/", i + 2)
        if j == -1:
            raise _unterminated("comment", i)
        return j + 2, False
    if c == "$" and dialect == "postgresql" and not after_name:
        tag = _dollar_tag(sql, i)
        if tag is None:
            return i + 1, False
        j = sql.find(tag, i + len(tag))
        if j == -1:
            raise _unterminated("dollar-quoted string", i)
        return j + len(tag), False
    if c == ":":
        return _colon_end(sql, i)
    # a run of ordinary characters, copied in one go
    j = i + 1
    while j < n and sql[j] not in "'\"`-#/$:eE":
        j += 1
    return j, False


@functools.lru_cache(maxsize=1024)
def translate(sql: str, dialect: str) -> TranslatedStatement:
    """
    Translate C{:name} placeholders in C{sql} for C{dialect}.

    Results are cached (statements are usually constants), so calling this per query
    costs a dictionary lookup.

    @param dialect: C{"postgresql"}, C{"mysql"} or C{"sqlite"}.
    @raise ParameterError: on an unterminated string, identifier or comment.
    """
    if dialect not in DIALECTS:
        raise ParameterError(f"expected a dialect in {DIALECTS}, got {dialect!r}")
    pyformat = dialect != "sqlite"
    out: list[str] = []
    names: list[str] = []
    i = 0
    while i < len(sql):
        j, placeholder = _token_end(sql, i, dialect)
        if placeholder:
            name = sql[i + 1 : j]
            names.append(name)
            out.append(f"%({name})s" if pyformat else sql[i:j])
        else:
            text = sql[i:j]
            out.append(text.replace("%", "%%") if pyformat else text)
        i = j
    return TranslatedStatement("".join(out), tuple(names))
