"""
The same tables as ``models.yaml``, declared as attrs classes: ``load_models([Author, Note])``
gives a schema equal to ``load_models("models.yaml")``. Use whichever form you prefer.
"""

from __future__ import annotations

import datetime
import enum

import attrs

from pywatt_twisted.data.models import column, model


class NoteStatus(enum.Enum):
    DRAFT = "draft"
    PUBLISHED = "published"


@model("authors", comment="People who write notes")
@attrs.define
class Author:
    id: int = column(primary_key=True, auto_increment=True)
    email: str = column(type="varchar", length=200, unique=True)
    display_name: str = column(type="varchar", length=100)


@model("notes", indexes=[{"columns": ["author_id", "status"]}], comment="One row per note")
@attrs.define
class Note:
    id: int = column(type="big_integer", primary_key=True, auto_increment=True)
    author_id: int = column(
        foreign_key={"table": "authors", "column": "id", "on_delete": "cascade"}
    )
    title: str = column(type="varchar", length=200)
    body: str | None = None
    # (ruff's RUF009 mistakes column(default=...) for a call evaluated once; it is not)
    status: NoteStatus = column(default="draft")  # noqa: RUF009
    created_at: datetime.datetime = column(default="now")  # noqa: RUF009


MODELS = [Author, Note]
