// Package localcert makes self-signed certificates for loopback TLS: the
// demo upstream, test servers, and the optional local TLS listener for
// legacy clients.
package localcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Pair is a CA and a server certificate it signed.
type Pair struct {
	// CAPEM is the CA certificate a client must trust.
	CAPEM []byte
	// CertPEM and KeyPEM are the server's certificate and private key.
	CertPEM, KeyPEM []byte
	// Cert is the server certificate, ready for a tls.Config.
	Cert tls.Certificate
	// Pool trusts the CA.
	Pool *x509.CertPool
}

// Generate makes a CA and a server certificate for names (DNS names or IP
// addresses), valid for validFor, with ECDSA keys.
func Generate(org string, names []string, validFor time.Duration) (*Pair, error) {
	return generate(org, names, validFor, false)
}

// GenerateRSA is Generate with RSA keys, which TLS stacks of old mail
// clients and printers need: many cannot do ECDSA.
func GenerateRSA(org string, names []string, validFor time.Duration) (*Pair, error) {
	return generate(org, names, validFor, true)
}

func newKey(rsaKey bool) (crypto.Signer, error) {
	if rsaKey {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func generate(org string, names []string, validFor time.Duration, rsaKey bool) (*Pair, error) {
	now := time.Now().Add(-time.Hour)
	caKey, err := newKey(rsaKey)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{org}, CommonName: org + " local CA"},
		NotBefore:             now,
		NotAfter:              now.Add(validFor),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := newKey(rsaKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{org}, CommonName: names[0]},
		NotBefore:    now,
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	p := &Pair{
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Pool:    x509.NewCertPool(),
	}
	p.Pool.AddCert(ca)
	p.Cert, err = tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	return p, err
}

// covers reports whether leaf is valid for every name.
func covers(leaf *x509.Certificate, names []string) bool {
	for _, n := range names {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// File names of a stored pair.
const (
	CAFile   = "local-tls-ca.pem"
	CertFile = "local-tls-cert.pem"
	KeyFile  = "local-tls-key.pem"
)

// LoadOrCreate reads the pair stored in dir, or generates an RSA pair for
// localhost and the given extra names and stores it (the key with mode
// 0600). Clients that want to verify the listener trust the CA file. A
// stored pair that has expired or does not name all of names is replaced
// (the CA's key is not kept, so the CA is new too).
func LoadOrCreate(dir string, names []string) (*Pair, error) {
	caPEM, err1 := os.ReadFile(filepath.Join(dir, CAFile))
	certPEM, err2 := os.ReadFile(filepath.Join(dir, CertFile))
	keyPEM, err3 := os.ReadFile(filepath.Join(dir, KeyFile))
	if err := errors.Join(err1, err2, err3); err == nil {
		p := &Pair{CAPEM: caPEM, CertPEM: certPEM, KeyPEM: keyPEM, Pool: x509.NewCertPool()}
		if !p.Pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("%s: no certificate in it; delete the local-tls-*.pem files to make new ones", filepath.Join(dir, CAFile))
		}
		if p.Cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("local TLS certificate in %s: %w; delete the local-tls-*.pem files to make new ones", dir, err)
		}
		if leaf, err := x509.ParseCertificate(p.Cert.Certificate[0]); err == nil && time.Now().Before(leaf.NotAfter) && covers(leaf, names) {
			return p, nil
		}
	} else {
		for _, e := range []error{err1, err2, err3} {
			if e != nil && !errors.Is(e, os.ErrNotExist) {
				return nil, e
			}
		}
	}
	all := []string{"localhost", "127.0.0.1", "::1"}
	for _, n := range names {
		if !slices.Contains(all, n) {
			all = append(all, n)
		}
	}
	p, err := GenerateRSA("smtpshim", all, 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{CAFile, p.CAPEM, 0o644}, {CertFile, p.CertPEM, 0o644}, {KeyFile, p.KeyPEM, 0o600}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, err
		}
	}
	return p, nil
}
