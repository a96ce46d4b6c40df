package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written like "30s", "5m" or "5d".
type Duration time.Duration

// UnmarshalText accepts Go durations plus a "d" suffix for days.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a duration like 30s, 5m, 2h or 5d", s)
		}
		*d = Duration(n * float64(24*time.Hour))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration like 30s, 5m, 2h or 5d", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in the form UnmarshalText reads.
func (d Duration) MarshalText() ([]byte, error) {
	v := time.Duration(d)
	if v >= 24*time.Hour && v%(24*time.Hour) == 0 {
		return []byte(strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"), nil
	}
	return []byte(v.String()), nil
}

// Size is a byte count written like "50MB", "512KB" or "1000".
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
}

// UnmarshalText accepts a number with an optional KB/MB/GB suffix
// (powers of 1024, as mail clients count).
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	mult := int64(1)
	num := str
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToUpper(str), strings.ToUpper(u.suffix)) {
			num = strings.TrimSpace(str[:len(str)-len(u.suffix)])
			mult = u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return fmt.Errorf("%q is not a size like 50MB, 512KB or 1048576", str)
	}
	*s = Size(n * mult)
	return nil
}

// MarshalText writes the size with the largest exact unit.
func (s Size) MarshalText() ([]byte, error) {
	for _, u := range sizeUnits[:3] {
		if s > 0 && int64(s)%u.mult == 0 {
			return []byte(strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(int64(s), 10)), nil
}

// UnmarshalTOML accepts both a plain integer and a string with a unit.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("size %d must not be negative", x)
		}
		*s = Size(x)
		return nil
	case string:
		return s.UnmarshalText([]byte(x))
	default:
		return fmt.Errorf("%v is not a size like \"50MB\"", v)
	}
}
