# wsgate build entry points. `make demo` runs the embedded demo node; `make test` runs every test.

CARGO ?= cargo
MAPPERS_OUT := target/mappers
WASM_TARGET := wasm32-wasip2

.PHONY: demo test check mappers wasm-target build bench clean

## Run one embedded node with the demo market on :8080 (admin on 127.0.0.1:8081).
demo: mappers
	$(CARGO) run --release --bin wsgate -- serve --mappers-dir $(MAPPERS_OUT)

## Build the mappers, then run unit and integration tests (real gateway, real WebSocket clients).
test: mappers
	$(CARGO) test --manifest-path mappers/Cargo.toml --workspace
	WSGATE_TEST_MAPPERS_DIR=$(CURDIR)/$(MAPPERS_OUT) $(CARGO) test --all-targets

## Formatting and lints, as CI runs them.
check:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --all --manifest-path mappers/Cargo.toml -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path mappers/Cargo.toml --workspace --all-targets -- -D warnings

## Build every mapper in mappers/ from source into target/mappers/<name>.wasm.
mappers: wasm-target
	$(CARGO) build --release --manifest-path mappers/Cargo.toml --workspace --target $(WASM_TARGET)
	mkdir -p $(MAPPERS_OUT)
	cp mappers/target/$(WASM_TARGET)/release/*.wasm $(MAPPERS_OUT)/

## Install the wasm32-wasip2 Rust target when missing.
wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || { \
	  echo "installing the $(WASM_TARGET) Rust target (from rustup's download server)"; \
	  rustup target add $(WASM_TARGET) || { echo "error: could not install $(WASM_TARGET); mappers cannot be built" >&2; exit 1; }; }

build: mappers
	$(CARGO) build --release --bins

## Build the load generator.
bench: build

clean:
	$(CARGO) clean
	$(CARGO) clean --manifest-path mappers/Cargo.toml
