"""
A module whose models are attrs classes, for C{pywatt db --models pkg.mod[:attr]}.
"""

from __future__ import annotations

import attrs
from klein import Klein

from pywatt_twisted import pywatt_module
from pywatt_twisted.data.models import column, model


@model("cli_attrs_people")
@attrs.define
class Person:
    id: int = column(primary_key=True, auto_increment=True)
    name: str = column(type="varchar", length=50)


MODELS = [Person]


@pywatt_module(models=MODELS, database="DATABASE_URL")
def app(state):
    return Klein()
