"""python-hcl2 parses with lark in pure Python (about 50 ms a file) and the deploy tests read the same .tf files
dozens of times: each distinct text is parsed once per process, keyed by its content (so an edited file is
parsed again), and every caller gets its own copy to do with as it likes."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import hcl2


@functools.cache
def _parsed(text: str) -> dict:
    return hcl2.loads(text)


def loads(text: str) -> dict:
    return copy.deepcopy(_parsed(text))


def load(path: Path) -> dict:
    return loads(path.read_text())
