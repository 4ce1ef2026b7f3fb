"""Offline `terraform validate` and `plan`: provider schemas pruned from the cdktf packages (extract.py),
a schema-only provider that serves them (server.py), and the filesystem mirror Terraform installs it
from (mirror.py)."""
