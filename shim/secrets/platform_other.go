//go:build !((dragonfly && cgo) || (freebsd && cgo) || linux || netbsd || openbsd)

package secrets

import "github.com/zalando/go-keyring"

// osBackend is go-keyring as is: on these platforms the keychain is part of
// the OS and needs no discovery.
func osBackend() keyringBackend {
	return keyringBackend{get: keyring.Get, set: keyring.Set, del: keyring.Delete}
}

// platformHint has nothing to add where the keychain is part of the OS: its
// errors already speak for themselves.
func platformHint(error) string { return "" }
