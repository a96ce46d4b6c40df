# smtpshim: the entry points a newcomer needs.
#
#   make demo        see the relay work end to end, no setup
#   make test        every test, including the real Postfix/Dovecot,
#                    legacy-client and keychain tests (installs their
#                    Debian packages first when run as root or with sudo)
#   make build       the binary, in bin/
#   make lint        go vet, gofmt and govulncheck (skipped, saying so,
#                    when it or its database cannot be fetched)
#   make fuzz        each fuzz target for FUZZTIME (default 20s)
#   make installers  the MSI, the macOS pkg and the debs, in dist/
#                    (VERSION=x.y.z; DARWIN_BIN=path for a Mac-built tray)
#   make installers-test   build them, then check and install each for real
#   make screenshots the tray menu and settings pages, into docs/
#
# shim/third_party/go-smtp is a patched go-smtp (see its PATCH.md), a
# module of its own: `make test` and `make fuzz` run its tests too.

GO      ?= go
# The one version source: VERSION=x.y.z, else installer/VERSION (a source
# tarball), else git describe. installer/build cleans it into each
# package format's form; SEMVER is what `smtpshim version` prints.
VERSION ?=
SEMVER   = $(shell $(GO) run ./installer/build -version '$(VERSION)' -print-version)
LDFLAGS  = -s -w -X main.version=$(SEMVER) $(OAUTH_LDFLAGS)
# A release with a registered OAuth2 app sets SMTPSHIM_MICROSOFT_CLIENT_ID,
# SMTPSHIM_GOOGLE_CLIENT_ID and SMTPSHIM_GOOGLE_CLIENT_SECRET in the
# environment (`make build` and `make installers` both use them).
OAUTH_LDFLAGS = $(foreach v,MicrosoftClientID:SMTPSHIM_MICROSOFT_CLIENT_ID GoogleClientID:SMTPSHIM_GOOGLE_CLIENT_ID GoogleClientSecret:SMTPSHIM_GOOGLE_CLIENT_SECRET,$(if $($(word 2,$(subst :, ,$(v)))),-X github.com/smtpshim/smtpshim/shim/oauth.$(word 1,$(subst :, ,$(v)))=$($(word 2,$(subst :, ,$(v))))))
PKGS    := ./...
DIST    ?= dist
DARWIN_BIN ?=

.PHONY: all demo test test-unit deps build lint bench fuzz clean installers installers-test screenshots

all: build

demo:
	$(GO) run ./cmd/smtpshim demo

deps:
	@.ci/deps

# The real-peer tests are behind the realpeer build tag so that a plain
# `go test ./...` stays fast; this target runs everything, inside a private
# D-Bus session with an unlocked gnome-keyring.
#
# Every log line written during the run (smtpshim processes and in-process
# engines) is collected and scanned for the passwords the tests used.
test: deps
	@logdir=$$(mktemp -d) && \
	SMTPSHIM_TEST_LOGDIR=$$logdir SMTPSHIM_LOG_COPY=$$logdir \
		.ci/with-keyring $(GO) test -tags realpeer -count=1 -timeout 30m $(PKGS) && \
	(cd shim/third_party/go-smtp && $(GO) test -count=1 .) && \
	.ci/scan-secrets $$logdir; rc=$$?; rm -rf $$logdir; exit $$rc

test-unit:
	$(GO) test -count=1 $(PKGS)
	cd shim/third_party/go-smtp && $(GO) test -count=1 .

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/smtpshim ./cmd/smtpshim

lint:
	$(GO) vet $(PKGS)
	$(GO) vet -tags realpeer $(PKGS)
	$(GO) vet -tags installers ./installer/...
	GOOS=windows $(GO) vet $(PKGS)
	GOOS=darwin $(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@GO=$(GO) .ci/govulncheck

# Each fuzz target for a short, bounded time; the regular tests replay the
# committed corpora under testdata/fuzz.
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run XXX -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./shim/config/
	$(GO) test -run XXX -fuzz '^FuzzLookup$$' -fuzztime $(FUZZTIME) ./shim/route/
	$(GO) test -run XXX -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./shim/addr/
	$(GO) test -run XXX -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME) ./shim/crlf/
	$(GO) test -run XXX -fuzz '^FuzzBlockwiseConvert$$' -fuzztime $(FUZZTIME) ./shim/crlf/
	$(GO) test -run XXX -fuzz '^FuzzBuild$$' -fuzztime $(FUZZTIME) ./shim/dsn/
	cd shim/third_party/go-smtp && for f in FuzzDataReader FuzzDotWriter FuzzLineLimit; do \
		$(GO) test -run XXX -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) . || exit 1; done

# smtpshim against direct submission (a real shim process, a simulated
# provider, an old-style load client), then the package microbenchmarks.
bench:
	$(GO) run ./cmd/shimbench
	$(GO) test -run XXX -bench . -benchtime 200x ./shim/crlf/ ./shim/spool/ ./shim/route/ ./shim/events/

# The installers, all built on Linux: dist/smtpshim-V-x64.msi (wixl),
# dist/smtpshim-V.pkg (xar, BOM and Payload written by installer/build),
# dist/smtpshim_V_amd64.deb and smtpshim-sendmail_V_all.deb (nfpm).
installers:
	$(GO) run ./installer/build -version '$(VERSION)' -out $(DIST) $(if $(DARWIN_BIN),-darwin-bin '$(DARWIN_BIN)')

# Inspect each package with the real tools, install the deb with dpkg and
# the MSI under Wine, and run the Windows build under Wine.
installers-test: deps installers
	SMTPSHIM_DIST=$(abspath $(DIST)) SMTPSHIM_VERSION='$(SEMVER)' \
		$(GO) test -tags installers -count=1 -timeout 20m -v ./installer/...

clean:
	rm -rf bin $(DIST)

# Pictures of the tray menu and the settings pages, into docs/ (Xvfb,
# xfce4-panel as the tray host, headless Chromium; see .ci/screenshots).
screenshots:
	@.ci/screenshots
