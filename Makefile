# Everything a fresh machine (Debian, root) needs is installed by these targets.
#   make run    the main job: a container run through the CLI on an embedded containerd
#   make test   the whole suite against a private containerd
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := .build
ROOTFS := $(BUILD)/rootfs
# A short path: unix socket paths are limited to 108 bytes.
CTRD_DIR := /tmp/supervisor-test-$(shell id -u)-$(shell echo $(CURDIR) | md5sum | cut -c1-8)
APT_PACKAGES := containerd runc busybox-static docker-registry skopeo apache2-utils containernetworking-plugins iptables iproute2 \
	golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev \
	golang-github-gogo-protobuf-dev

.PHONY: all deps system-deps venv rootfs protos test test-cgroup2 unit lint typecheck run bench bench-check profile clean

all: test

system-deps:
	missing=""
	for p in $(APT_PACKAGES); do
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"
	done
	if [ -n "$$missing" ]; then
	  echo "installing:$$missing"
	  export DEBIAN_FRONTEND=noninteractive
	  apt-get update -qq
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,protos]'
	touch $@

venv: $(VENV)/.installed

deps: system-deps venv

rootfs: system-deps
	scripts/mkrootfs.sh $(ROOTFS)

protos: deps
	PYTHON=$(PY) protos/generate.sh supervisor/_proto

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

typecheck: lint

# The suite runs against one private containerd started here and always
# stopped afterwards; tests that kill containerd start their own.
test: deps rootfs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	scripts/containerd-private.sh start $(CTRD_DIR)
	rc=0
	SUPERVISOR_TEST_ADDRESS=$(CTRD_DIR)/containerd.sock \
	SUPERVISOR_TEST_ROOTFS=$(CURDIR)/$(ROOTFS) \
	  $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?
	scripts/containerd-private.sh stop $(CTRD_DIR)
	exit $$rc

# The cgroup-touching integration tests on a pure cgroup v2 kernel: a throw-away
# QEMU VM (TCG) with its own containerd and runc, the guest image cached in
# .build/cgroup2/ (docs/cgroup2.md). PYTEST_ARGS default to `-m "cgroup or network or criu" tests/integration`;
# CGROUP2_TIMEOUT (2700 s) bounds the whole VM run.
test-cgroup2: rootfs
	scripts/cgroup2/run.sh $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The main job: an embedded containerd (supervisor.Daemon) started for the
# run, a busybox container through the command, its output streamed live.
run: deps rootfs
	$(PY) -m supervisor run --embedded $(BUILD)/embedded --rootfs $(ROOTFS) --rm --id demo \
	  --log-level info -- sh -c 'for i in 1 2 3 4 5; do echo "tick $$i from $$(hostname)"; sleep 0.3; done'

# The host's figures, then checkpoint/restore against ctr in the cgroup v2 VM
# lane (CRIU cannot dump on the host's kernel; about 4-6 min with the boot),
# after the host's run so that the VM does not disturb it. A failed VM step is
# recorded in latest.json and said in the report, and does not fail the target:
# the host's figures stand on their own (make bench-check then misses the
# checkpoint line).
bench: deps rootfs
	scripts/containerd-private.sh start $(CTRD_DIR)-bench
	rc=0
	$(PY) -m benchmarks --address $(CTRD_DIR)-bench/containerd.sock \
	  --rootfs $(ROOTFS) --out bench-results/latest.json || rc=$$?
	scripts/containerd-private.sh stop $(CTRD_DIR)-bench
	if [ $$rc -eq 0 ]; then
	  $(PY) -m benchmarks.checkpoint_vm --into bench-results/latest.json \
	    || echo "bench: the checkpoint step failed (exit $$?); reporting without it" >&2
	fi
	if [ $$rc -eq 0 ]; then $(PY) -m benchmarks.report bench-results/latest.json > benchmarks/README.md; fi
	exit $$rc

# Where the library's time goes in a lifecycle (pyinstrument call tree).
profile: deps rootfs
	scripts/containerd-private.sh start $(CTRD_DIR)-prof
	rc=0
	$(PY) -m benchmarks.profile --address $(CTRD_DIR)-prof/containerd.sock \
	  --rootfs $(ROOTFS) || rc=$$?
	scripts/containerd-private.sh stop $(CTRD_DIR)-prof
	exit $$rc

bench-check: venv
	$(PY) -m benchmarks.check bench-results/latest.json

clean:
	rm -rf $(BUILD) bench-results .mypy_cache .ruff_cache .pytest_cache
