# Myelin — `make run` starts the daemon, `make test` runs the whole suite.
SHELL := /bin/bash
APT_PACKAGES := libuv1-dev libsodium-dev libpq-dev libssl-dev libsqlite3-dev node-llhttp postgresql pkg-config
SWIFT ?= swift

.PHONY: deps build release run test test-swift clean

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

clean:
	rm -rf .build
