# Myelin — `make run` starts the daemon, `make test` runs the whole suite.
SHELL := /bin/bash
APT_PACKAGES := libuv1-dev libsodium-dev libpq-dev libssl-dev libsqlite3-dev node-llhttp postgresql pkg-config ffmpeg espeak-ng sox libvips-dev chromium chromium-driver coturn
SWIFT ?= swift

.PHONY: deps build release run test test-swift test-federation test-browser fuzz clean

deps:
	@scripts/install-deps.sh $(APT_PACKAGES)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product myelin

run: release
	$$($(SWIFT) build -c release --show-bin-path)/myelin serve

test: deps
	scripts/test.sh

# The admin page in headless Chromium (tests/browser/); screenshots in .build/browser-screenshots/.
test-browser: deps
	$(SWIFT) build --product myelin
	scripts/test-browser.sh

# Federation interop with a real Synapse (docs/federation.md); not yet part of `make test`.
# FEDERATION_PEER=synapse runs the same scenarios Synapse to Synapse.
test-federation: deps
	scripts/test-federation.sh

# The spec-driven fuzzer's long pass (docs/fuzzing.md): schemathesis over every client-server
# OpenAPI file of the Matrix spec, 50 examples per operation, against the debug binary.
FUZZ_VENV := .build/fuzz-venv
FUZZ_EXAMPLES ?= 50

fuzz: deps
	$(SWIFT) build --product myelin
	tests/fuzz/venv.sh $(FUZZ_VENV)
	MYELIN_BIN="$$($(SWIFT) build --show-bin-path)/myelin" FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	  $(FUZZ_VENV)/bin/python tests/fuzz/run_schemathesis.py

clean:
	rm -rf .build
