"""mmsgate's version, as every answer's ``meta.version`` and ``mmsgate-admin --version`` give it.

pyproject.toml's ``[project] version`` is the one source of truth; this constant repeats it so that a function
reads it without importlib.metadata (tens of milliseconds on a cold start, and a deployed function's source is
not an installed distribution). tests/unit/test_version.py fails when the two differ; docs/releasing.md says
when to bump it.
"""

VERSION = "0.5.0"
