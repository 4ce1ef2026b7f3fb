"""Cloud Functions source entry: every function deploys from this one archive.

Cloud Functions loads the entry point as an attribute of ``main.py``. Each attribute is resolved
lazily (PEP 562) so a function instance imports only its own module and the libraries that module
needs: ``send`` never pays for the provider client, ``webhook`` never pays for Cloud Tasks.
"""

import importlib

# entry point -> module under functions/ that defines a function of the same name
ENTRY_POINTS = {
    "send": "functions.send",
    "group": "functions.group",
    "batch": "functions.batch",
    "messages": "functions.messages",
    "optouts": "functions.optouts",
    "templates": "functions.templates",
    "dispatch": "functions.dispatch",
    "webhook": "functions.webhook",
    "notifier": "functions.notifier",
    "sweeper": "functions.sweeper",
    "links": "functions.links",
}


def __getattr__(name: str):
    module_name = ENTRY_POINTS.get(name)
    if module_name is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(module_name), name)
