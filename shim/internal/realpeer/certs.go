//go:build linux

package realpeer

import (
	"os"
	"time"

	"github.com/smtpshim/smtpshim/shim/localcert"
)

// writeCerts generates a throwaway CA and a server certificate signed by it
// (for DNS "localhost" and IP 127.0.0.1) and writes them as PEM files:
// caFile (CA certificate), certFile (server certificate followed by the CA,
// i.e. the full chain) and keyFile (server private key, mode 0600).
func writeCerts(caFile, certFile, keyFile string) error {
	p, err := localcert.Generate("smtpshim tests", []string{"localhost", "127.0.0.1"}, 365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.WriteFile(caFile, p.CAPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(certFile, append(p.CertPEM, p.CAPEM...), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, p.KeyPEM, 0o600)
}
