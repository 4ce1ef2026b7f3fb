"""Pure domain rules over typed records: no I/O, no cloud SDK, no clock but the one passed in.

May import: the standard library, pydantic-free helpers (phonenumbers), and other modules of ``shared.rules``.
Never ``shared.services``, ``shared.ports``, ``shared.api``, ``shared.carriers`` or ``infra``
(tests/unit/test_layout.py checks it). See shared/README.md.
"""
