# memshim: build, test, demo and benchmark entry points.
CARGO ?= cargo
RELEASE := target/release
DEMO_DIR := target/demo

.PHONY: all build test demo bench lint clean

all: build

## build: the shim (libmemshim.so) and the collector (memcollect), optimised
build:
	$(CARGO) build --release --workspace

## test: every unit and end-to-end test (builds first)
test: build
	$(CARGO) test --release --workspace --no-fail-fast

## demo: profile examples/demo.c, a small service with a leak, churn and a table
demo: build
	@mkdir -p $(DEMO_DIR)
	cc -O1 -g -o $(DEMO_DIR)/demo examples/demo.c
	$(RELEASE)/memcollect run --top 5 -- $(DEMO_DIR)/demo

## bench: slowdown of the shim against the same programs run plain (and heaptrack)
bench: build
	python3 bench/run.py

## lint: formatting and clippy, as CI wants them
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
