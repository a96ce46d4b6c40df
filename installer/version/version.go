// Package version turns the one version source of a build (git describe,
// an installer/VERSION file in a source tarball, or VERSION=x.y.z given to
// make) into the forms each package format accepts.
//
// The formats disagree:
//   - semantic version, what `smtpshim version` prints: 1.2.4-rc.1,
//     1.2.3+3.g1a2b3c (three commits after v1.2.3);
//   - MSI ProductVersion: three numbers only, major and minor at most 255,
//     build at most 65535; wixl checks none of this, and a "v" or "-rc1"
//     would go into the package as it is;
//   - Debian: 1.2.4~rc.1-1, where "~" sorts a pre-release before the
//     release, "+" after it, and "-1" is the packaging revision.
package version

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// V is a cleaned version.
type V struct {
	Major, Minor, Patch int
	Pre                 string // "rc.1", without the "-"
	Build               string // "3.g1a2b3c" or "g1a2b3c.dirty", without the "+"
}

var (
	// git describe --tags --always --dirty: v1.2.3, v1.2.3-rc.1,
	// v1.2.3-3-g1a2b3c, v1.2.3-rc.1-3-g1a2b3c-dirty.
	describeRE = regexp.MustCompile(`^v?(\d+)\.(\d+)(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?$`)
	// The part git describe adds after the tag.
	suffixRE = regexp.MustCompile(`(?:-(\d+)-g([0-9a-f]+))?(-dirty)?$`)
	// git describe --always without any tag: just the abbreviated hash.
	hashRE   = regexp.MustCompile(`^([0-9a-f]{4,40})(-dirty)?$`)
	preRE    = regexp.MustCompile(`^[0-9A-Za-z]+(\.[0-9A-Za-z]+)*$`)
	buildsep = strings.NewReplacer("-", ".", "_", ".")
)

// Parse accepts what git describe prints, a plain x.y.z, or x.y.z with a
// pre-release and build metadata. An untagged tree (git describe prints a
// bare hash) becomes 0.0.0+g<hash>.
func Parse(raw string) (V, error) {
	s := strings.TrimSpace(raw)
	if m := hashRE.FindStringSubmatch(s); m != nil && !strings.Contains(s, ".") {
		v := V{Build: "g" + m[1]}
		if m[2] != "" {
			v.Build += ".dirty"
		}
		return v, nil
	}
	// Semantic-version build metadata given directly: 1.2.3+abc.
	var build string
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s, build = s[:i], buildsep.Replace(s[i+1:])
	}
	sfx := suffixRE.FindStringSubmatch(s)
	s = s[:len(s)-len(sfx[0])]
	m := describeRE.FindStringSubmatch(s)
	if m == nil {
		return V{}, fmt.Errorf("version %q is not of the form 1.2.3, 1.2.3-rc.1 or what git describe prints", raw)
	}
	var v V
	var err error
	if v.Major, err = num(m[1], 255, "major"); err != nil {
		return V{}, fmt.Errorf("version %q: %w", raw, err)
	}
	if v.Minor, err = num(m[2], 255, "minor"); err != nil {
		return V{}, fmt.Errorf("version %q: %w", raw, err)
	}
	if m[3] != "" {
		if v.Patch, err = num(m[3], 65535, "patch"); err != nil {
			return V{}, fmt.Errorf("version %q: %w", raw, err)
		}
	}
	if m[4] != "" {
		v.Pre = strings.ReplaceAll(m[4], "-", ".")
		if !preRE.MatchString(v.Pre) {
			return V{}, fmt.Errorf("version %q: bad pre-release %q", raw, m[4])
		}
	}
	var parts []string
	if sfx[1] != "" {
		parts = append(parts, sfx[1], "g"+sfx[2])
	}
	if build != "" {
		parts = append(parts, build)
	}
	if sfx[3] != "" {
		parts = append(parts, "dirty")
	}
	v.Build = strings.Join(parts, ".")
	if v.Build != "" && !preRE.MatchString(v.Build) {
		return V{}, fmt.Errorf("version %q: bad build metadata %q", raw, v.Build)
	}
	return v, nil
}

// num parses one numeric field; MSI bounds it (major and minor 255, build
// 65535), so a version that cannot become an MSI version is refused here,
// for every format alike.
func num(s string, max int, what string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n > max || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%s version %s must be a number from 0 to %d without leading zeros", what, s, max)
	}
	return n, nil
}

func (v V) core() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// String is the semantic version, what `smtpshim version` prints.
func (v V) String() string {
	s := v.core()
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// MSI is the ProductVersion: major.minor.patch, nothing else. Windows
// Installer compares only these three fields, so a pre-release and its
// release share a version, and the release does not replace the
// pre-release (wixl cannot write AllowSameVersionUpgrades): uninstall a
// pre-release before installing its release.
func (v V) MSI() string { return v.core() }

// Debian is the upstream part of a Debian version: a pre-release sorts
// before its release (1.2.4~rc.1), commits after a tag sort after it
// (1.2.3+3.g1a2b3c).
func (v V) Debian() string {
	s := v.core()
	if v.Pre != "" {
		s += "~" + v.Pre
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// DebianFull adds the packaging revision: 1.2.4~rc.1-1.
func (v V) DebianFull() string { return v.Debian() + "-1" }

// MacOS is CFBundleShortVersionString and the pkg version: three numbers.
func (v V) MacOS() string { return v.core() }

// FileName is the version in the names of the files in dist/: the
// semantic version, with "+" (awkward in URLs) as "."; the deb uses its
// own upstream version.
func (v V) FileName() string { return strings.ReplaceAll(v.String(), "+", ".") }

// Windows is the four-part FILEVERSION of the exe's version resource.
func (v V) Windows() string { return v.core() + ".0" }
