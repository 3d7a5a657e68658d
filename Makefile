# meshd — build, test and run. `make help` lists the targets.
GO        ?= go
WASM_ENV  := GOOS=wasip1 GOARCH=wasm
PLUGINS   := order payment user
PLUGIN_WASM := $(PLUGINS:%=build/plugins/%.wasm)
# WAT test guests (*/testdata/*.wat) are compiled by the tests themselves
# with wat2wasm (internal/wattest), so they are never stale.
# Go guest fixtures: every */testdata/guest-*/ directory builds to testdata/guest-*.wasm.
GO_GUESTS := $(shell find . -path ./build -prune -o -type d -name 'guest-*' -path '*testdata*' -print)
GO_GUEST_WASM := $(GO_GUESTS:%=%.wasm)
HTTP      ?= :8080
ADMIN     ?= 127.0.0.1:8081
DATA      ?= build/data
TEST_TIMEOUT ?= 30m
# Packages that run as wasip1 guests: vetted and staticchecked for that
# target too (their wasip1-only files are invisible to a host build).
WASM_PKGS := ./abi ./guest/... ./plugins/... $(GO_GUESTS)
# staticcheck, built from the module proxy at a pinned version into a
# project-local directory (never taken from PATH). 2026.2.2 (v0.8.2) is
# the newest release and builds with Go 1.26.
STATICCHECK_VERSION := v0.8.2
TOOLS_DIR   := build/tools
STATICCHECK := $(TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)

.PHONY: all build plugins fixtures tools lint-tools run run-gateway test test-short bench lint tidy-check check fuzz clean help FORCE

all: build plugins

help:
	@echo "make run      build meshd and the demo plugins, run them (HTTP on $(HTTP))"
	@echo "make run-gateway  the same behind examples/gateway.toml (API key, rate limit)"
	@echo "make test     build plugins and fixtures, vet, run every test with -race"
	@echo "make bench    run the Go benchmarks (figures in docs/performance.md)"
	@echo "make wazero-check  third_party/wazero is upstream wazero plus third_party/wazero-patches"
	@echo "make wazero-test   the wazero fork's own tests for the packages the patches touch"
	@echo "make nats-check    third_party/nats-server is upstream nats-server plus third_party/nats-server-patches"
	@echo "make nats-test     the nats-server fork's own tests of what the patches touch"
	@echo "make build    bin/meshd;  make plugins  build/plugins/*.wasm"
	@echo "make lint     gofmt, go vet and staticcheck (host and wasip1 guests)"
	@echo "make tidy-check  fails when go mod tidy would change go.mod or go.sum"
	@echo "make check    lint and tidy-check: the static half of CI, a few minutes"
	@echo "make density  N services in one meshd: start times and memory per idle service"
	@echo "make fuzz     every Fuzz target for FUZZTIME each (default 1m; CI runs 2000x)"

build: bin/meshd

bin/meshd: FORCE
	$(GO) build -o $@ ./cmd/meshd

plugins: $(PLUGIN_WASM)

# go build is incremental on its own, so these always run it.
build/plugins/%.wasm: FORCE
	@mkdir -p build/plugins
	$(WASM_ENV) $(GO) build -buildmode=c-shared -o $@ ./plugins/$*
	@if [ -f plugins/$*/$*.toml ]; then cp plugins/$*/$*.toml build/plugins/$*.toml; fi

# Installs Debian packages (as root, or with sudo); the package names follow.
APT_INSTALL = if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq

# wat2wasm comes from Debian's wabt; install it when missing (CI runs as root).
tools:
	@command -v wat2wasm >/dev/null 2>&1 || { \
	  echo "installing wabt (wat2wasm)"; \
	  $(APT_INSTALL) wabt >/dev/null; }
	@# promtool and the prometheus server, for the metrics tests (they skip without them).
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || { \
	  echo "installing prometheus (promtool, prometheus)"; \
	  $(APT_INSTALL) prometheus >/dev/null || \
	  echo "could not install prometheus: the metrics tests that need it will skip"; }

$(GO_GUEST_WASM): FORCE
	$(WASM_ENV) $(GO) build -buildmode=c-shared -o $@ ./$(@:.wasm=)

fixtures: tools $(GO_GUEST_WASM)

run: build plugins
	bin/meshd run --plugins build/plugins --data $(DATA) --http $(HTTP)

# The gateway demo: examples/gateway.toml's API key and rate limit on POST /orders.
run-gateway: build plugins
	bin/meshd run --plugins build/plugins --data $(DATA) --http $(HTTP) --config examples/gateway.toml

test: plugins fixtures
	$(GO) vet ./...
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	@# The daemon's end-to-end tests again: a fresh instance for every call
	@# (renewed in place from the snapshot), then every instance initialised
	@# (snapshots off): each must behave as the default does.
	MESHD_TEST_INSTANCES=fresh $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./daemon/
	MESHD_TEST_INSTANCES=initialised $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./daemon/

test-short: plugins fixtures
	$(GO) test -short ./...

bench: plugins fixtures
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=2s ./... | tee build/bench.txt

# Load test on loopback: POST /orders through meshd with the real plugins,
# then through a native net/http handler (bench/nativeorder), with wrk
# from Debian (installed when missing). Bounded: DURATION per phase
# (default 10s), the whole run under 5 minutes. Results in build/loadtest.txt.
.PHONY: loadtest
loadtest: build plugins
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "installing wrk"; \
	  $(APT_INSTALL) wrk >/dev/null; }
	timeout 300 bench/loadtest/run.sh

# Density: DENSITY_N services (Go copies of bench/density's guest, and
# generated WAT) in one meshd: start times with a cold and a warm cache,
# resident memory with 0, N/2 and N idle services (bench/density).
# Results in build/density.txt. The burst benchmark is BenchmarkBurst in
# the same package (`make bench`).
DENSITY_N ?= 100
.PHONY: density
density: fixtures
	@mkdir -p build
	$(GO) run ./bench/density -n $(DENSITY_N) | tee build/density.txt

# Every Fuzz target of the repository (not the forks), one after
# another, FUZZTIME each. CI runs them briefly by count (FUZZTIME=2000x):
# with a duration, Go 1.26's fuzzing coordinator can end a target with a
# bare "context deadline exceeded" and no failing input when a worker is
# mid-input at the deadline on a loaded machine. A longer run is
# `make fuzz FUZZTIME=10m`. A failing input is written under the
# package's testdata/fuzz/ and then replays in every `go test`.
FUZZTIME ?= 1m
fuzz: plugins fixtures
	@set -e; for file in $$(git ls-files '*_test.go' | grep -v '^third_party/' | xargs grep -l '^func Fuzz'); do \
	  pkg=./$$(dirname $$file); \
	  for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
	    echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# gofmt on every tracked Go file but the forks'; go vet and
# staticcheck for the host, then for the wasip1 guests. staticcheck's
# choices are in staticcheck.conf; one finding that is meant is silenced
# where it stands with //lint:ignore CHECK reason.
lint: lint-tools
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^third_party/')); \
	  if [ -n "$$out" ]; then echo "gofmt -l (run gofmt -w on these):"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(WASM_ENV) $(GO) vet $(WASM_PKGS)
	$(STATICCHECK) ./...
	$(WASM_ENV) $(STATICCHECK) $(WASM_PKGS)

lint-tools: $(STATICCHECK)

# Built in a scratch directory and renamed, so a broken build leaves nothing
# that looks installed; a new STATICCHECK_VERSION is a new file name.
$(STATICCHECK):
	@rm -rf $(TOOLS_DIR)/.staticcheck && mkdir -p $(TOOLS_DIR)/.staticcheck
	GOBIN=$(CURDIR)/$(TOOLS_DIR)/.staticcheck $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS_DIR)/.staticcheck/staticcheck $@ && rm -rf $(TOOLS_DIR)/.staticcheck

# go.mod and go.sum are what `go mod tidy` makes of them: prints the diff
# and fails otherwise (the fix is to run `go mod tidy` and commit).
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit the result"; exit 1; }

check: lint tidy-check

clean:
	rm -rf bin build $(GO_GUEST_WASM)

# make browser-tools, make test-browser: the console's browser test.
include test/browser/browser.mk

# make wazero-check, make wazero-test, make nats-check, make nats-test:
# the forks as patch queues (last, so that `make` alone still builds meshd
# and the plugins).
include third_party/wazero-patches/patches.mk
include third_party/nats-server-patches/patches.mk
# Rust guests (the SDK, the shipping plugin, the Rust conformance guest).
include sdk/rust/rust.mk
