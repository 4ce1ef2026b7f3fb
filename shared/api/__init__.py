"""Request and answer shapes of the public HTTP API (pydantic models, plain-dict parsers, the envelope).

May import ``shared.rules`` only (tests/unit/test_layout.py checks it). See shared/README.md.
"""
