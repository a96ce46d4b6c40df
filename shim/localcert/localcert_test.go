package localcert

import (
	"crypto/x509"
	"testing"
)

// TestLoadOrCreateAddsListenNames: a stored pair that lacks a name the
// listener now needs is replaced by one that has it; one that has them
// all is kept.
func TestLoadOrCreateAddsListenNames(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	same, err := LoadOrCreate(dir, []string{"localhost", "127.0.0.1"})
	if err != nil || string(same.CAPEM) != string(first.CAPEM) {
		t.Fatalf("a pair that already covers the names was replaced (%v)", err)
	}
	lan, err := LoadOrCreate(dir, []string{"192.168.1.10", "office-pc"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(lan.Cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"localhost", "127.0.0.1", "::1", "192.168.1.10", "office-pc"} {
		if err := leaf.VerifyHostname(n); err != nil {
			t.Errorf("the certificate does not name %s: %v", n, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: lan.Pool, DNSName: "office-pc"}); err != nil {
		t.Fatalf("the new CA does not verify the certificate: %v", err)
	}
	again, err := LoadOrCreate(dir, []string{"office-pc"})
	if err != nil || string(again.CAPEM) != string(lan.CAPEM) {
		t.Fatalf("the stored LAN pair was not reused (%v)", err)
	}
}
