package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// misplaced explains an unknown account setting that is really a setting
// of the whole file: in TOML everything after an [[account]] line belongs
// to that account, so a line such as `listen = ...` added at the end of a
// file written by "smtpshim account add" lands in the last account.
func misplaced(keys []toml.Key) error {
	for _, k := range keys {
		if len(k) == 2 && k[0] == "account" && topLevelSetting(k[1]) {
			return fmt.Errorf("%s is a setting for the whole file, but it comes after an [[account]] line, so it counts as part of that account: move it to the top of the file, above the first [[account]]", k[1])
		}
	}
	return nil
}

// topLevelSetting reports whether name is a top-level setting of Config.
func topLevelSetting(name string) bool {
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if tag == name && tag != "account" {
			return true
		}
	}
	return false
}
