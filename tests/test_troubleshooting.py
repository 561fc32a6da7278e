"""
C{docs/troubleshooting.md} stays true: every message it quotes still exists in the source,
and its links to its own entries lead somewhere.

Each entry (a C{## } heading) carries a comment naming literal text of the messages it
quotes, as it is written in C{src/} (one string literal, f-string placeholders included)::

    <!-- source: "cannot listen on " | "did you mean" -->

Each such text must appear in C{src/pywatt_twisted} and, with its placeholders, match the
entry's prose or examples, so a reworded message makes this test fail until the page
follows.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "troubleshooting.md"
SOURCE = "\n".join(
    path.read_text(encoding="utf-8")
    for path in sorted((REPO / "src" / "pywatt_twisted").rglob("*.py"))
)

_MARKER = re.compile(r"<!--\s*source:(?P<texts>.*?)-->")
_QUOTED = re.compile(r'"([^"]+)"')
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def entries(text: str) -> list[tuple[str, str]]:
    """
    The page's C{## } entries as C{(heading, body)}.
    """
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def slug(heading: str) -> str:
    """
    The anchor GitHub gives a heading.
    """
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def as_pattern(literal: str) -> re.Pattern[str]:
    """
    A source literal as a regex over the page (whitespace runs made single spaces):
    placeholders match anything.
    """
    pieces = _PLACEHOLDER.split(literal)
    return re.compile(".+?".join(re.escape(p) for p in pieces))


def flat(text: str) -> str:
    """
    C{text} with every run of whitespace (a line break in prose) made one space.
    """
    return re.sub(r"\s+", " ", text)


class TroubleshootingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.text = PAGE.read_text(encoding="utf-8")

    def test_at_least_ten_entries_each_checked(self) -> None:
        found = entries(self.text)
        self.assertGreaterEqual(len(found), 10)
        for heading, body in found:
            self.assertTrue(_MARKER.search(body), f"entry {heading!r} has no <!-- source: -->")

    def test_quoted_messages_are_in_the_source(self) -> None:
        for heading, body in entries(self.text):
            prose = flat(heading + "\n" + _MARKER.sub("", body))
            for marker in _MARKER.finditer(body):
                literals = _QUOTED.findall(marker.group("texts"))
                self.assertTrue(literals, f"empty source comment in {heading!r}")
                for literal in literals:
                    self.assertIn(
                        literal,
                        SOURCE,
                        f"{heading!r} quotes {literal!r}, which is no longer in src/",
                    )
                    self.assertRegex(
                        prose,
                        as_pattern(literal),
                        f"{heading!r} names {literal!r} but does not show it",
                    )

    def test_internal_links(self) -> None:
        anchors = {slug(heading) for heading, _ in entries(self.text)}
        for target in re.findall(r"\]\(#([^)]+)\)", self.text):
            self.assertIn(target, anchors, f"link to #{target} leads nowhere")

    def test_linked_from_the_readme(self) -> None:
        self.assertIn("docs/troubleshooting.md", (REPO / "README.md").read_text("utf-8"))
