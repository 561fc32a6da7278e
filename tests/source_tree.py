"""
A private copy of this checkout's packaging sources, for tests that build or install
the project.

setuptools builds in the source tree (C{build/}, C{src/*.egg-info}); two builds of the
same tree at once (C{trial -j} runs the wheel test and the C{pywatt new} venv tests in
parallel workers) overwrite each other's files and fail at random. Each test builds
from its own copy instead.
"""

from __future__ import annotations

import os
import shutil

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: what a build of the project reads (pyproject.toml names README.md as the readme)
SOURCES = ("pyproject.toml", "README.md", "src")


def copy_source_tree(destination: str) -> str:
    """
    Copy the files a build needs into C{destination} (created) and return its absolute
    path; caches, build outputs and C{dropin.cache} are left out.
    """
    destination = os.path.abspath(destination)
    os.makedirs(destination, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "dropin.cache", "*.pyc")
    for name in SOURCES:
        source = os.path.join(PROJECT_ROOT, name)
        target = os.path.join(destination, name)
        if os.path.isdir(source):
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    return destination
