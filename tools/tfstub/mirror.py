"""A Terraform filesystem mirror whose providers are the schema-only stub (server.py), and a CLI
configuration that installs hashicorp/google, google-beta, archive and time from it and nothing from the
network.

    python3 tools/tfstub/mirror.py DIR [--python .venv-tfstub/bin/python]   # prints the CLI config path

Terraform starts a provider by executing the file it finds in the mirror's unpacked layout
(`registry.terraform.io/hashicorp/<type>/<version>/<os>_<arch>/terraform-provider-<type>_v<version>`);
here that file is a small shell script that execs the stub under the stub's own Python, with a certificate
cache in DIR shared by every start (tools/tfstub/server.py). Both linux_amd64 and linux_arm64 (and the darwin
pair) are laid out, so the mirror works whatever machine runs Terraform.
The lock file Terraform writes from this mirror holds the stub's hashes, not the real providers': never
commit it (docs/deploy.md says how the real lock is made).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCHEMAS = HERE / "schemas"
DEFAULT_PYTHON = ROOT / ".venv-tfstub" / "bin" / "python"
PLATFORMS = ("linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64")


def providers() -> dict[str, dict]:
    """type name (google, google-beta, archive, time) -> its schema file's source, version and path."""
    out = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        out[path.stem] = {"source": schema["source"], "version": schema["version"], "schema": path}
    return out


def build(directory: Path, python: Path = DEFAULT_PYTHON) -> Path:
    """Lay out the mirror under directory/mirror and write directory/terraformrc; return the latter."""
    mirror = directory / "mirror"
    cert_cache = directory / "tfstub-cert.json"
    for name, p in providers().items():
        host, namespace, ptype = p["source"].split("/")
        assert ptype == name, (ptype, name)
        for platform in PLATFORMS:
            target = mirror / host / namespace / ptype / p["version"] / platform
            target.mkdir(parents=True, exist_ok=True)
            exe = target / f"terraform-provider-{ptype}_v{p['version']}"
            exe.write_text(f'#!/bin/sh\nexec "{python}" "{HERE / "server.py"}" "{p["schema"]}" "{cert_cache}"\n')
            exe.chmod(0o755)
    sources = sorted({"/".join(p["source"].split("/")[:2]) + "/*" for p in providers().values()})
    config = directory / "terraformrc"
    config.write_text(
        "provider_installation {\n"
        f"  filesystem_mirror {{\n    path    = {json.dumps(str(mirror))}\n"
        f"    include = {json.dumps(sources)}\n  }}\n"
        f"  direct {{\n    exclude = {json.dumps(sources)}\n  }}\n"
        "}\n"
        "disable_checkpoint = true\n"
    )
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the stub providers' filesystem mirror.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON)
    args = parser.parse_args(argv)
    print(build(args.directory.absolute(), args.python.absolute()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
