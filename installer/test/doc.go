// Package test checks the installers that `make installers` writes, with
// the real tools: dpkg and lintian for the deb, msiinfo and Wine for the
// MSI, and readers written here for the macOS xar, Payload and BOM. The
// tests are behind the installers build tag; `make installers-test` builds
// the packages and runs them:
//
//	make installers-test
//	go test -tags installers -count=1 -v ./installer/test/ -run Deb   # after make installers
//
// SMTPSHIM_DIST names the directory with the packages (default: dist at
// the repository root), SMTPSHIM_VERSION the version they were built as.
package test
