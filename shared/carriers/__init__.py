"""The carrier-neutral provider port and each carrier's wire format: reports, signatures, error classes.

May import ``shared.rules`` only (tests/unit/test_layout.py checks it). See shared/README.md.
"""
