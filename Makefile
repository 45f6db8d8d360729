# `make test` is the one test command (README, CI): it installs what is
# missing, then runs every test.
GO ?= go

.PHONY: test deps build check fuzz bench demo demo-cluster deb

# `make demo` is the README's first command: the multiple-interfaces lab,
# narrated (root; installs first what the demo runs and is missing, not
# what only the tests need).
demo: build
	./scripts/install-deps.sh demo
	./bin/mifike demo

# The gateway cluster: three nodes on etcd, a crash and the takeover.
demo-cluster: build
	./scripts/install-deps.sh demo-cluster
	./bin/mifike demo cluster

test: deps
	$(GO) test -count=1 ./...

deps:
	./scripts/install-deps.sh

# The binary says which commit it is (mifike version), also where the
# toolchain's own stamping is off (GOFLAGS=-buildvcs=false).
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/mifike ./cmd/mifike

# The Debian package, dist/mifike_VERSION_ARCH.deb (dpkg-deb alone:
# packaging/deb/build.sh).
deb:
	VERSION=$(VERSION) GO=$(GO) ./packaging/deb/build.sh

# Static checks CI runs besides the tests.
check:
	./scripts/check.sh

# Every fuzz target for FUZZTIME each.
FUZZTIME ?= 15s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

bench:
	$(GO) test -run=NONE -bench=. -benchmem ./...
