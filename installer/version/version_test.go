package version

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		raw, semver, msi, deb string
	}{
		{"1.2.3", "1.2.3", "1.2.3", "1.2.3-1"},
		{"v1.2.3", "1.2.3", "1.2.3", "1.2.3-1"},
		{"v1.2.4-rc.1", "1.2.4-rc.1", "1.2.4", "1.2.4~rc.1-1"},
		{"v1.2.4-rc1", "1.2.4-rc1", "1.2.4", "1.2.4~rc1-1"},
		{"1.2", "1.2.0", "1.2.0", "1.2.0-1"},
		{"v1.2.3-3-g1a2b3c", "1.2.3+3.g1a2b3c", "1.2.3", "1.2.3+3.g1a2b3c-1"},
		{"v1.2.3-3-g1a2b3c-dirty", "1.2.3+3.g1a2b3c.dirty", "1.2.3", "1.2.3+3.g1a2b3c.dirty-1"},
		{"v1.2.4-rc.1-2-gabcdef0", "1.2.4-rc.1+2.gabcdef0", "1.2.4", "1.2.4~rc.1+2.gabcdef0-1"},
		{"61415ff", "0.0.0+g61415ff", "0.0.0", "0.0.0+g61415ff-1"},
		{"61415ff-dirty", "0.0.0+g61415ff.dirty", "0.0.0", "0.0.0+g61415ff.dirty-1"},
		{"1.0.0+build.7", "1.0.0+build.7", "1.0.0", "1.0.0+build.7-1"},
		{" 2.0.1\n", "2.0.1", "2.0.1", "2.0.1-1"},
	} {
		v, err := Parse(tc.raw)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.raw, err)
			continue
		}
		if v.String() != tc.semver || v.MSI() != tc.msi || v.DebianFull() != tc.deb {
			t.Errorf("Parse(%q) = %s / msi %s / deb %s, want %s / %s / %s", tc.raw, v, v.MSI(), v.DebianFull(), tc.semver, tc.msi, tc.deb)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, raw := range []string{"", "dev", "1.2.3.4", "256.0.0", "1.256.0", "1.0.65536", "01.2.3", "1.2.3-rc_1", "1.2.3 beta", "x1.2.3"} {
		if v, err := Parse(raw); err == nil {
			t.Errorf("Parse(%q) = %s, want an error", raw, v)
		}
	}
}

func TestFileName(t *testing.T) {
	v, _ := Parse("v1.2.3-3-g1a2b3c")
	if got := v.FileName(); got != "1.2.3.3.g1a2b3c" {
		t.Errorf("FileName = %q", got)
	}
}
