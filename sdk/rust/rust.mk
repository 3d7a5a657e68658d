# Rust guests, included by the Makefile: the SDK (sdk/rust), the shipping
# plugin (plugins/shipping) and the Rust conformance guest
# (conformance/testdata/rust-conformance).
#
# Built with Debian's toolchain, which ships the WebAssembly standard
# library (rustc 1.63, target wasm32-wasi), installed when missing like
# wabt. Debian's cargo would pick the first rustc on PATH (a rustup one
# without a wasm target, on these machines), so RUSTC and RUSTDOC name
# Debian's. No crates registry is needed: nothing depends on a crate.
#
# With a current rustup instead (the target was renamed wasm32-wasip1 in
# Rust 1.78; wasm32-wasi is gone since 1.84):
#   rustup target add wasm32-wasip1
#   make plugins RUST_BIN=$$(dirname $$(rustup which rustc)) RUST_TARGET=wasm32-wasip1
RUST_BIN    ?= /usr/bin
RUST_TARGET ?= wasm32-wasi
CARGO_DIR   := $(CURDIR)/build/cargo
CARGO_RUN   := RUSTC=$(RUST_BIN)/rustc RUSTDOC=$(RUST_BIN)/rustdoc CARGO_TARGET_DIR=$(CARGO_DIR) $(RUST_BIN)/cargo
RUST_CONFORMANCE := conformance/testdata/rust-conformance

.PHONY: rust-tools rust-test rust-clean

# Debian's rustc, cargo and wasm32 standard library, when RUST_BIN is
# Debian's and one of them is missing.
rust-tools:
	@if [ "$(RUST_BIN)" = /usr/bin ]; then \
	  { [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/wasm32-wasi/lib ]; } || { \
	    echo "installing rustc, cargo and libstd-rust-dev-wasm32"; \
	    $(APT_INSTALL) rustc cargo libstd-rust-dev-wasm32 >/dev/null; }; \
	fi

# cargo is incremental on its own, so these always run it.
build/plugins/shipping.wasm: rust-tools FORCE
	@mkdir -p build/plugins
	cd plugins/shipping && $(CARGO_RUN) build --offline --release --target $(RUST_TARGET)
	cp $(CARGO_DIR)/$(RUST_TARGET)/release/shipping.wasm $@
	cp plugins/shipping/shipping.toml build/plugins/shipping.toml

$(RUST_CONFORMANCE).wasm: rust-tools FORCE
	cd $(RUST_CONFORMANCE) && $(CARGO_RUN) build --offline --release --target $(RUST_TARGET)
	cp $(CARGO_DIR)/$(RUST_TARGET)/release/rust_conformance.wasm $@

# The crates' host-side unit tests (against the SDK's in-memory host).
rust-test: rust-tools
	cd sdk/rust && $(CARGO_RUN) test --offline -q
	cd plugins/shipping && $(CARGO_RUN) test --offline -q

rust-clean:
	rm -f $(RUST_CONFORMANCE).wasm

plugins: build/plugins/shipping.wasm
fixtures: $(RUST_CONFORMANCE).wasm
test: rust-test
clean: rust-clean
