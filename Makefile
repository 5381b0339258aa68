# orbit: build, install, test. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
PREFIX ?= /usr/local
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
export PATH := $(PATH):/usr/local/go/bin:$(GOBIN_DIR)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w \
  -X github.com/senhasegura/orbit/internal/buildinfo.Version=$(VERSION) \
  -X github.com/senhasegura/orbit/internal/buildinfo.Commit=$(COMMIT) \
  -X github.com/senhasegura/orbit/internal/buildinfo.Date=$(DATE)

.PHONY: help build install deps test unit e2e soak fuzz lint bench generate check-generated clean release-check snapshot demo

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## build ./bin/orbit (static, no cgo)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/orbit ./cmd/orbit

install: build ## install orbit, completions, man pages and docs (/usr/share/doc/orbit), then show the proxy's commands
	install -D -m 0755 bin/orbit $(DESTDIR)$(PREFIX)/bin/orbit
	install -D -m 0644 completions/orbit.bash $(DESTDIR)/usr/share/bash-completion/completions/orbit
	install -D -m 0644 completions/orbit.zsh $(DESTDIR)/usr/share/zsh/vendor-completions/_orbit
	install -D -m 0644 completions/orbit.fish $(DESTDIR)/usr/share/fish/vendor_completions.d/orbit.fish
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 docs/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -d $(DESTDIR)/usr/share/doc/orbit
	install -m 0644 docs/*.md $(DESTDIR)/usr/share/doc/orbit/
	$(DESTDIR)$(PREFIX)/bin/orbit version
	$(DESTDIR)$(PREFIX)/bin/orbit email-oauth2-proxy -help

deps: ## install what the tests need (Dovecot, systemd, curl, python3, staticcheck); needs root
	bash .ci/install-deps.sh

test: deps lint ## everything CI runs: deps, vet, staticcheck, generated files fresh, all tests, the race detector on the libraries, then every fuzz target briefly
	$(GO) test -count=1 -timeout 15m ./...
	$(GO) test -race -short -count=1 -timeout 10m ./pkg/... ./internal/cli/... ./internal/journallog/
	$(MAKE) fuzz

unit: ## the quick tests (those needing root, systemd or Dovecot skip with a reason when not root)
	$(GO) test -short ./...

e2e: ## the end-to-end scenarios against Dovecot, the fake provider and a sandboxed systemd (root)
	$(GO) test -count=1 -timeout 15m -run 'E2E|Sandbox' ./internal/e2e/ ./internal/systemd/ ./internal/cli/emailproxy/service/

soak: ## serve for SOAK (default 10m) under logins, wrong passwords, invented names, dropped clients and reloads; fails on a leak (docs/soak.md; root, Dovecot)
	ORBIT_SOAK=$(or $(SOAK),10m) $(GO) test -count=1 -v -timeout 0 -run 'TestE2ESoak$$' ./internal/e2e/

fuzz: ## run every Fuzz* target for FUZZTIME each (default 5s); a crasher fails and is kept under testdata/fuzz to commit
	FUZZTIME=$(or $(FUZZTIME),5s) bash .ci/fuzz

demo: deps ## play the documentation's scenario once against Dovecot and the fake provider, steps printed (root)
	$(GO) test -count=1 -v -run 'TestE2EAuthorizationCode$$' ./internal/e2e/

lint: check-generated ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...

generate: ## regenerate completions/ and docs/ (command reference, man pages)
	$(GO) run ./internal/gendocs -out .

check-generated: ## fail when completions/ or the generated docs are stale
	$(GO) run ./internal/gendocs -out . -check

bench: ## every performance target of issue 11 as a table (target, measured, direct baseline, met?); raw results in bench.txt for benchstat (root, Dovecot, systemd: make deps)
	@rc=0; set -o pipefail; \
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./pkg/... ./cmd/orbit/ ./internal/cli/emailproxy/logs/ | tee bench.txt || rc=1; \
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./internal/e2ebench/ | tee -a bench.txt || rc=1; \
	echo; $(GO) run ./internal/benchtable bench.txt; exit $$rc

clean:
	rm -rf bin dist bench.txt

release-check: ## validate goreleaser.yaml (installs goreleaser v2.15.1, the last that builds with Go 1.26)
	command -v goreleaser >/dev/null || $(GO) install github.com/goreleaser/goreleaser/v2@v2.15.1
	goreleaser check

snapshot: ## build release archives and deb/rpm packages locally into dist/ (no publishing)
	command -v goreleaser >/dev/null || $(GO) install github.com/goreleaser/goreleaser/v2@v2.15.1
	goreleaser release --snapshot --clean
