# gpufleet — developer and CI entry points. Run as root on Debian 12.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.collections
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0
LAB_NODES ?= 2
BUNDLE_DIR ?= .cache/bundles/lab
# What the lab bundle carries that is made here (gpufleet lab bundle-inputs, before each lab bundle
# build): the lab engine's wheel (.cache/wheels), the tiny model's two versions (.cache/models), the
# tiny image.

.PHONY: help host-deps venv lab-image lab-bundle lint lint-host unit check integration faults molecule test demo demo-down ee clean

# `make help` prints every target that has a '## ' comment on its line.
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 22

host-deps: ## install and start what the lab needs (docker, debootstrap, gpg, promtool; as root)
	@bash scripts/host-deps.sh

.collections/ansible_collections/gpufleet/cluster:
	@mkdir -p .collections/ansible_collections/gpufleet
	@ln -sfn ../../.. .collections/ansible_collections/gpufleet/cluster

$(VENV)/.stamp: pyproject.toml
	@bash scripts/host-deps.sh python
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV)/.stamp .collections/ansible_collections/gpufleet/cluster ## the Python venv (.venv) with gpufleet and the dev tools

# Host code (plugins/module_utils, plugins/modules) runs on managed hosts: linted for the oldest Python the
# collection supports there (3.8, ansible-core 2.19's floor) and, when a Python 3.8 is found, compiled,
# imported and unit-tested under it (tests only if that Python has pytest: HOST_PYTHON=<py3.8 venv>/bin/python).
HOST_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.8*/bin/python3.8) \
	$(shell python3.8 -c 'import sys; print(sys.executable)' 2>/dev/null))

lint-host: venv ## host code (module_utils, modules): ruff at Python 3.8, compiled/imported under 3.8 when found
	$(BIN)/ruff check --config ruff-host.toml plugins/module_utils plugins/modules
	$(BIN)/python scripts/check_host_code.py $(if $(HOST_PYTHON),--python $(HOST_PYTHON))

lint: venv lint-host ## ruff (lint + format) and ansible-lint, production profile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# ansible-lint (offline) installs this collection into $$ANSIBLE_HOME/collections with --force; so
	@# does Molecule, which make test runs at the same time: a home of its own, or one removes the
	@# copy the other is syntax-checking ("couldn't resolve module" for a module that exists).
	ANSIBLE_HOME=$(CURDIR)/.cache/ansible-lint-home $(BIN)/ansible-lint --profile production

unit: venv ## unit tests (recorded outputs, no lab)
	$(BIN)/pytest tests/unit -q -p no:cacheprovider -n auto

check: lint unit ## the inner loop: lint + unit tests, under 2 minutes

integration: lab-image ## integration tests against a one-node lab
	$(BIN)/pytest tests/integration -q

# Faults injected mid-run on nodes from the lab layer image (make test makes it): power loss during
# the DKMS build, the controller killed while dpkg runs, a nearly full /opt; and on an air-gapped lab
# (a bastion serving the lab bundle): power loss while dpkg unpacks the CUDA toolkit and while pip
# unpacks the cuDNN wheel, the bastion stopped mid-download, power loss while a new model version
# starts beside the served one. Table: reports/faults.json.
faults: lab-bundle ## fault-injection suite (needs the layer image that make test commits; ~30 min)
	$(BIN)/pytest tests/faults -q -s -p no:cacheprovider

lab-image: venv host-deps ## build the lab image (debootstrap; cached by recipe hash)
	$(BIN)/gpufleet lab image

lab-bundle: lab-image ## build (or resume/refresh) the signed lab bundle, the one package source of the tests
	$(BIN)/gpufleet lab bundle-inputs
	$(BIN)/gpufleet bundle build bundles/lab.yml -o $(BUNDLE_DIR)

molecule: lab-bundle ## every Molecule scenario (converge, idempotence, testinfra verify)
	$(BIN)/molecule test --all

# What CI runs (.ci/run): every stage timed; the table goes to the terminal and reports/test-timings.json.
test: ## everything CI runs, as timed stages with a budget of 30 minutes (tests/suite.py)
	@$(PY) tests/suite.py

# The demo is the air-gapped flow: build (or resume/reuse) the signed lab bundle, verify it, bring up
# a bastion and nodes on an internal network with no route out, provision everything from the bundle
# with `gpufleet apply` (a live per-host view on a terminal, plain lines in a log; every event and
# Ansible's own output kept in reports/lab/runs/<id>/).
demo: venv host-deps ## the air-gapped flow: signed bundle, bastion + 2 nodes, gpufleet apply site.yml, gpufleet verify, a served completion
	$(BIN)/gpufleet lab bundle-inputs
	$(BIN)/gpufleet bundle build bundles/lab.yml -o $(BUNDLE_DIR)
	$(BIN)/gpufleet bundle verify $(BUNDLE_DIR) --fingerprint "$$($(BIN)/gpufleet bundle key --fingerprint)"
	$(BIN)/gpufleet lab up --airgap --nodes $(LAB_NODES) --bundle $(BUNDLE_DIR) \
		--fingerprint "$$($(BIN)/gpufleet bundle key --fingerprint)"
	$(BIN)/gpufleet apply playbooks/site.yml -i inventories/lab/hosts.yml --runs-dir reports/lab/runs
	@mkdir -p reports/lab
	$(BIN)/gpufleet verify -i inventories/lab/hosts.yml --limit gpu_nodes --json reports/lab/verify.json \
		--junit reports/lab/verify.junit.xml --prometheus reports/lab/gpufleet_verify.prom
	@echo
	@echo "The served model (llama.cpp on node1's CPU, behind the authenticated, audited front):"
	$(BIN)/gpufleet lab ask --prompt "The fleet is"
	@echo
	@echo "Verify reports: reports/lab/ (JSON, JUnit XML, Prometheus textfile). The site.yml run:"
	@echo "reports/lab/runs/<id>/ (events.jsonl, summary.json, Ansible's output in artifacts/<id>/stdout)."
	@echo "The air-gapped lab is still up: 'gpufleet lab status', 'docker exec -it gpufleet-lab-node1 bash',"
	@echo "'make demo-down'. The bundle stays in $(BUNDLE_DIR) (signing key: ~/.local/share/gpufleet/signing)."

demo-down: venv ## remove the lab containers (the cached image stays)
	$(BIN)/gpufleet lab down

# The AWX/AAP execution environment (execution-environment.yml, docs/awx.md): the collection tarball and
# the gpufleet wheel into dist/, then ansible-builder's build context into context/. Building the image
# is `ansible-builder build --context context -t gpufleet-ee:0.1.0` (podman or docker; not run here).
ee: venv ## the execution environment's build context (context/): collection tarball, wheel, ansible-builder create
	$(BIN)/ansible-galaxy collection build --force --output-path dist .
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	$(BIN)/ansible-builder create --file execution-environment.yml --context context --output-filename Containerfile

clean: ## remove the venv and build outputs (caches stay)
	rm -rf $(VENV) .collections dist build context

# --- make newest: the collection on the newest ansible-core ------------------------------------
# A second venv (.venv-newest) on Python 3.13/3.12 from pyenv with the newest ansible-core from PyPI
# (upgraded on every run): unit tests, ansible-doc of every module and filter, and a syntax check of
# every playbook. Only the gpufleet package itself is installed from this tree (--no-deps: its
# ansible-core pin is the tested range of the main venv, not this check's).
NEWEST_VENV := .venv-newest
NEWEST_PY ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3 $(HOME)/.pyenv/versions/3.12*/bin/python3) \
	$(shell command -v python3.13 python3.12 2>/dev/null))
NEWEST_BIN := $(CURDIR)/$(NEWEST_VENV)/bin

.PHONY: newest

$(NEWEST_VENV)/.stamp: pyproject.toml
	@test -n "$(NEWEST_PY)" || { echo "make newest needs Python 3.12 or 3.13 (pyenv install 3.13)"; exit 1; }
	$(NEWEST_PY) -m venv $(NEWEST_VENV)
	$(NEWEST_BIN)/pip install --quiet --upgrade pip
	$(NEWEST_BIN)/pip install --quiet pytest 'pytest-xdist>=3.5,<4' pytest-testinfra PyYAML 'ansible-runner>=2.4,<3' 'rich>=13' 'gguf==0.19.0'
	$(NEWEST_BIN)/pip install --quiet --no-deps -e .
	@touch $@

# The unit tests that run whole roles with ansible-playbook against localhost (the front with a real
# nginx, monitoring, serving's stop/start: 220 of the suite's 400 CPU-s) run on the pinned ansible-core
# in `unit` only: the suite's critical path is lane 0 on two cores, and the roles run for real in Molecule.
NEWEST_SKIP := --ignore=tests/unit/serving/test_llm_serve_front.py --ignore=tests/unit/monitoring/test_monitoring_role.py \
	--ignore=tests/unit/serving/test_llm_serve_stop_start.py
newest: $(NEWEST_VENV)/.stamp .collections/ansible_collections/gpufleet/cluster ## unit tests, ansible-doc, syntax checks on the newest ansible-core (.venv-newest)
	@start=$$(date +%s); \
	PATH=$(NEWEST_BIN):$$PATH; \
	pip install --quiet --upgrade ansible-core && python -c 'import ansible.release as r; print("ansible-core", r.__version__)' \
	&& pytest tests/unit -q -p no:cacheprovider -n auto $(NEWEST_SKIP) \
	&& modules=$$(ls plugins/modules/*.py | xargs -n1 basename | sed 's/\.py$$//; s/^/gpufleet.cluster./') \
	&& ansible-doc -t module $$modules > /dev/null && echo "ansible-doc: modules $$(echo $$modules | wc -w) ok" \
	&& filters=$$(ansible-doc -t filter -l gpufleet.cluster | awk '{print $$1}') \
	&& test -n "$$filters" && ansible-doc -t filter $$filters > /dev/null \
	&& echo "ansible-doc: filters $$(echo $$filters | wc -w) ok" \
	&& for pb in playbooks/*.yml; do ansible-playbook --syntax-check $$pb > /dev/null || exit 1; done \
	&& echo "syntax-check: $$(ls playbooks/*.yml | wc -l) playbooks ok" \
	&& echo "make newest: passed in $$(( $$(date +%s) - start ))s"
