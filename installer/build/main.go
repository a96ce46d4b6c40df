// Command build makes smtpshim's installers, all on one Linux machine:
// the Windows MSI (wixl), the macOS flat package (xar, with a BOM and a
// Payload written here) and the Debian packages (nfpm). `make installers`
// runs it; see the Installers section of the README.
//
//	go run ./installer/build [-version V] [-out dist] [-darwin-bin PATH] [deb] [msi] [pkg] [pkgroot]
//
// pkgroot stages the macOS package for pkgbuild and productbuild on a Mac
// (a signed release; see installer/macos/release.yml).
//
// The version comes from -version (make passes VERSION, which defaults to
// git describe, or installer/VERSION in a source tarball) and is cleaned
// into each format's own form by installer/version. Builds are
// reproducible: file times come from SOURCE_DATE_EPOCH (default: the
// commit time of HEAD), and the Go binaries are built with -trimpath and
// an empty build ID.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/smtpshim/smtpshim/installer/icons"
	"github.com/smtpshim/smtpshim/installer/version"
)

type builder struct {
	root      string // repository root
	out       string // where the packages go
	work      string // scratch, removed at the end
	v         version.V
	epoch     time.Time
	icons     icons.Set
	darwinBin string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "installer/build:", err)
		os.Exit(1)
	}
}

func run() error {
	raw := flag.String("version", "", "version (default: installer/VERSION, else git describe)")
	out := flag.String("out", "dist", "output directory")
	darwinBin := flag.String("darwin-bin", "", "a macOS tray binary built on a Mac (default: the headless darwin build)")
	printVersion := flag.Bool("print-version", false, "print the cleaned semantic version and exit")
	flag.Parse()
	what := flag.Args()
	if len(what) == 0 {
		what = []string{"deb", "msi", "pkg"}
	}

	root, err := repoRoot()
	if err != nil {
		return err
	}
	b := &builder{root: root, darwinBin: *darwinBin}
	if b.out, err = filepath.Abs(*out); err != nil {
		return err
	}
	if *raw == "" {
		if *raw, err = defaultVersion(root); err != nil {
			return err
		}
	}
	if b.v, err = version.Parse(*raw); err != nil {
		return err
	}
	if *printVersion {
		fmt.Println(b.v)
		return nil
	}
	if b.epoch, err = sourceDateEpoch(root); err != nil {
		return err
	}
	if b.icons, err = icons.Load(filepath.Join(root, "tray", "icons")); err != nil {
		return err
	}
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return err
	}
	if b.work, err = os.MkdirTemp(b.out, ".work-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)

	fmt.Printf("smtpshim %s (msi %s, deb %s), file times %s\n", b.v, b.v.MSI(), b.v.DebianFull(), b.epoch.UTC().Format(time.RFC3339))
	for _, w := range what {
		var err error
		switch w {
		case "deb":
			err = b.deb()
		case "msi":
			err = b.msi()
		case "pkg":
			err = b.pkg()
		case "pkgroot":
			err = b.pkgroot()
		default:
			err = fmt.Errorf("unknown package kind %q (deb, msi, pkg, pkgroot)", w)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", w, err)
		}
	}
	return nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// defaultVersion is installer/VERSION when present (a source tarball has
// no git history), else git describe.
func defaultVersion(root string) (string, error) {
	if b, err := os.ReadFile(filepath.Join(root, "installer", "VERSION")); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	out, err := exec.Command("git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "", fmt.Errorf("no -version, no installer/VERSION and git describe failed: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// sourceDateEpoch is SOURCE_DATE_EPOCH, else the commit time of HEAD.
func sourceDateEpoch(root string) (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		out, err := exec.Command("git", "-C", root, "log", "-1", "--format=%ct").Output()
		if err != nil {
			return time.Unix(0, 0).UTC(), nil
		}
		s = strings.TrimSpace(string(out))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// oauthClientFlags compiles in the OAuth2 client IDs of a registered app,
// from SMTPSHIM_MICROSOFT_CLIENT_ID, SMTPSHIM_GOOGLE_CLIENT_ID and
// SMTPSHIM_GOOGLE_CLIENT_SECRET (see the README, "The app registration").
// Without them the packages ship none, and users configure their own.
func oauthClientFlags() []string {
	var ld []string
	for _, v := range []struct{ env, name string }{
		{"SMTPSHIM_MICROSOFT_CLIENT_ID", "MicrosoftClientID"},
		{"SMTPSHIM_GOOGLE_CLIENT_ID", "GoogleClientID"},
		{"SMTPSHIM_GOOGLE_CLIENT_SECRET", "GoogleClientSecret"},
	} {
		if val := strings.TrimSpace(os.Getenv(v.env)); val != "" {
			ld = append(ld, "-X", "github.com/smtpshim/smtpshim/shim/oauth."+v.name+"="+val)
		}
	}
	return ld
}

// goBuild builds cmd/smtpshim for one platform into out.
func (b *builder) goBuild(goos, goarch, out string, ldextra []string) error {
	ld := append([]string{"-s", "-w", "-buildid=", "-X", "main.version=" + b.v.String()}, ldextra...)
	ld = append(ld, oauthClientFlags()...)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", strings.Join(ld, " "), "-o", out}
	args = append(args, "./cmd/smtpshim")
	cmd := exec.Command("go", args...)
	cmd.Dir = b.root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build for %s/%s: %w", goos, goarch, err)
	}
	return os.Chtimes(out, b.epoch, b.epoch)
}

// tool runs a Go tool pinned in installer/tools/go.mod (nfpm, go-winres),
// which keeps their dependencies out of the product's go.mod.
func (b *builder) tool(name string, args ...string) error {
	cmd := exec.Command("go", append([]string{"tool", name}, args...)...)
	cmd.Dir = filepath.Join(b.root, "installer", "tools")
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", b.epoch.Unix()))
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return nil
}

// write puts data at path (made absolute under the work dir when
// relative) with the source date as its time.
func (b *builder) write(path string, data []byte, mode os.FileMode) (string, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(b.work, path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return "", err
	}
	if err := os.Chmod(path, mode); err != nil {
		return "", err
	}
	return path, os.Chtimes(path, b.epoch, b.epoch)
}

// asset reads a file kept under installer/.
func (b *builder) asset(rel string) ([]byte, error) {
	return os.ReadFile(filepath.Join(b.root, "installer", rel))
}
