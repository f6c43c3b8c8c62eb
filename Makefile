# kolla-entry: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test lint unit demo demo-small charts images container-test region-test region-test-all bench bench-overlay stress clean

# Images (images/README.md): `make images` builds the base and every service image, `make images
# SERVICES="nova neutron"` some; the infrastructure images with INFRA (default all three).
SERVICES ?= all
INFRA ?= mariadb postgres rabbitmq memcached

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

test: lint unit

lint: $(STAMP)
	$(BIN)/ruff check kolla_entry tests bench examples charts/build.py images/test
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not stress"

demo: $(STAMP)
	$(BIN)/python examples/keystone/demo.py

demo-small: $(STAMP)
	bash examples/small/demo.sh

charts: $(STAMP)
	$(BIN)/python charts/build.py

images: $(STAMP)
	bash images/build.sh $(INFRA) $(SERVICES)

# The container test: the keystone image's kolla-entry checks (container-test.sh), then every service of
# SERVICES started from its chart (chart_test.py) on the infrastructure images the umbrella uses, then Keystone
# in a hardened container (read-only root, uid 42425, no capabilities: overlay mode, hardened-test.sh), then the
# horizon image hardened with a template and a static-file hot-fix (horizon-hardened-test.sh). CI runs
# the default (keystone nova neutron); `make container-test SERVICES=all` runs every service.
CONTAINER_TEST_SERVICES = $(if $(filter command line environment,$(origin SERVICES)),$(SERVICES),keystone nova neutron)
container-test: $(STAMP)
	bash images/test/container-test.sh
	bash images/build.sh mariadb rabbitmq memcached keystone $(CONTAINER_TEST_SERVICES)
	$(BIN)/python images/test/chart_test.py $(CONTAINER_TEST_SERVICES)
	bash images/test/hardened-test.sh
	bash images/build.sh horizon
	bash images/test/horizon-hardened-test.sh

# The region test (tests/region/run.py): charts/europe-example-region rendered with tests/region/values.yaml and
# run on podman, one network namespace per pod, then python-openstackclient's scenario against it. It builds the
# images it needs (cached when nothing changed). region-test-all adds every other service (outside CI).
REGION_IMAGES = mariadb rabbitmq memcached keystone glance placement nova neutron
OSC := work/region/osc
region-test: $(STAMP) $(OSC)/.installed-stamp
	bash images/build.sh $(REGION_IMAGES)
	$(BIN)/python tests/region/run.py

region-test-all: $(STAMP) $(OSC)/.installed-stamp
	bash images/build.sh $(REGION_IMAGES) barbican cinder designate horizon ironic manila
	$(BIN)/python tests/region/run.py all

# The scenario's client, pinned (tests/region/client-requirements.txt), apart from the project's venv.
$(OSC)/.installed-stamp: tests/region/client-requirements.txt
	test -x $(OSC)/bin/python || $(PYTHON) -m venv $(OSC)
	$(OSC)/bin/python -m pip install -q -r $<
	touch $@

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-overlay: $(STAMP)
	$(BIN)/python bench/overlay.py

stress: $(STAMP)
	KOLLA_ENTRY_STRESS=1 $(BIN)/pytest -m "slow or stress"

clean:
	rm -rf $(VENV) work
