# Two commands: `make dev` starts the local stack, `make test` runs every test. Both install what they need.
PYTHON ?= python3
VENV := .venv
EMU_VENV := .venv-emulators
CHECKOV_VENV := .venv-checkov
TFSTUB_VENV := .venv-tfstub
PY := $(VENV)/bin/python
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: dev test bench bench-quick install browser lint clean

# Stamp files make re-runs cheap: a venv is rebuilt only when what it installs changes.
$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -e '.[test]' 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import functions_framework, google.cloud.firestore, google.cloud.tasks_v2, hcl2" 
	touch $@

# The Cloud Tasks emulator pins protobuf < 5, which the app's Google clients cannot use: own venv.
$(EMU_VENV)/.stamp: tools/emulators-requirements.txt
	$(PYTHON) -m venv $(EMU_VENV)
	$(EMU_VENV)/bin/pip install $(PIP_FLAGS) -r tools/emulators-requirements.txt 2>&1 | grep -v "is ignored" || true
	$(EMU_VENV)/bin/python -c "import gcloud_tasks_emulator, gcp_storage_emulator"
	touch $@

# checkov ships its own fork of python-hcl2 under the same import name: own venv.
$(CHECKOV_VENV)/.stamp: tools/checkov-requirements.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install $(PIP_FLAGS) -r tools/checkov-requirements.txt 2>&1 | grep -v "is ignored" || true
	touch $@

# The schema-only Terraform provider stub (tools/tfstub) that lets `make test` run terraform validate and
# plan offline; the `tf` package pins protobuf < 6: own venv.
$(TFSTUB_VENV)/.stamp: tools/tfstub-requirements.txt
	$(PYTHON) -m venv $(TFSTUB_VENV)
	$(TFSTUB_VENV)/bin/pip install $(PIP_FLAGS) -r tools/tfstub-requirements.txt 2>&1 | grep -v "is ignored" || true
	$(TFSTUB_VENV)/bin/python -c "import tf.gen.tfplugin_pb2, grpc, msgpack, cryptography"
	touch $@

install: $(VENV)/.stamp $(EMU_VENV)/.stamp $(CHECKOV_VENV)/.stamp $(TFSTUB_VENV)/.stamp

# Debian's chromium and its driver, for the console test (tests/e2e/test_console.py), with apt-get where they
# are missing. Where apt cannot install them, that one test is skipped, saying why; nothing else needs them.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; \
	else echo "make browser: chromium/chromedriver missing and no root for apt-get: the console test will be skipped" >&2; \
	exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	echo "make browser: chromium/chromedriver missing and no apt-get: the console test will be skipped" >&2; exit 0; fi; \
	echo "make browser: installing chromium and chromium-driver with apt-get"; \
	($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver \
	>/dev/null) || echo "make browser: apt-get could not install them: the console test will be skipped" >&2

dev: $(VENV)/.stamp $(EMU_VENV)/.stamp
	$(PY) -m tools.stack

test: install browser
	$(PY) -m pytest

bench: $(VENV)/.stamp $(EMU_VENV)/.stamp
	$(PY) -m bench.run

bench-quick: $(VENV)/.stamp $(EMU_VENV)/.stamp
	$(PY) -m bench.run --quick

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check main.py functions shared infra tools tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(EMU_VENV) $(CHECKOV_VENV) $(TFSTUB_VENV) .dev .pytest_cache
