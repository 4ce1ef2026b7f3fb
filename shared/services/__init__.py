"""Application services, one module per use case (send, dispatch, reports, inbound, ...).

A service is handed a ``shared.ports.Runtime`` and talks to the world only through it. May import
``shared.rules``, ``shared.ports``, ``shared.carriers``, ``shared.api`` and other services; never ``infra``
(tests/unit/test_layout.py checks it). See shared/README.md.
"""
