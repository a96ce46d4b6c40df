package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpshim/smtpshim/shim"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/secrets"
	"github.com/smtpshim/smtpshim/shim/upstreamsim"
)

// impostor is a program that took the relay's port: it answers like a
// mail server and records every line it is sent.
type impostor struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
}

func startImpostor(t *testing.T) *impostor {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	im := &impostor{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go im.serve(c)
		}
	}()
	return im
}

func (im *impostor) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	c.Write([]byte("220 impostor ESMTP\r\n"))
	inData := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		im.mu.Lock()
		im.lines = append(im.lines, line)
		im.mu.Unlock()
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case inData:
			if cmd == "." {
				inData = false
				c.Write([]byte("250 2.0.0 taken\r\n"))
			}
		case strings.HasPrefix(cmd, "EHLO"):
			c.Write([]byte("250-impostor\r\n250 AUTH PLAIN LOGIN\r\n"))
		case strings.HasPrefix(cmd, "AUTH"):
			c.Write([]byte("235 2.7.0 thanks\r\n"))
		case cmd == "DATA":
			inData = true
			c.Write([]byte("354 go on\r\n"))
		case cmd == "QUIT":
			c.Write([]byte("221 bye\r\n"))
			return
		default:
			c.Write([]byte("250 2.0.0 ok\r\n"))
		}
	}
}

func (im *impostor) heard() string {
	im.mu.Lock()
	defer im.mu.Unlock()
	return strings.Join(im.lines, "")
}

func relayLoginConfig(t *testing.T, listen, server string) *config.Config {
	dir, err := os.MkdirTemp("", "rl") // short: the control socket's path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := &config.Config{
		Hostname:  "shim.test",
		Listen:    []string{listen},
		SpoolDir:  filepath.Join(dir, "spool"),
		LocalAuth: config.LocalAuthRequire,
		Accounts:  []config.Account{{Address: cliUser, Server: server, Security: config.SecurityStartTLS, PasswordCommand: "echo " + cliPass}},
	}
	cfg.SetPath(filepath.Join(dir, "config.toml"))
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

const relayLoginMsg = "From: " + cliUser + "\nTo: bob@example.net\nSubject: login\n\nhello\n"

// TestSendGivesAnImpostorNoLogin: with local_auth = "require" and no
// relay running, a program that took the port gets no AUTH (and nothing
// that could stand for the local password); the message goes straight to
// the provider instead.
func TestSendGivesAnImpostorNoLogin(t *testing.T) {
	im := startImpostor(t)
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	downAddr := down.Addr().String()
	down.Close()
	cfg := relayLoginConfig(t, im.ln.Addr().String(), downAddr)
	var out, errOut bytes.Buffer
	a := &app{configPath: cfg.Path(), stdin: strings.NewReader(relayLoginMsg), stdout: &out, stderr: &errOut}
	code := a.run([]string{"send", "-f", cliUser, "bob@example.net"})
	if heard := im.heard(); strings.Contains(strings.ToUpper(heard), "AUTH") || strings.Contains(heard, "MAIL") {
		t.Fatalf("the impostor heard:\n%s", heard)
	}
	if code != 0 || !strings.Contains(errOut.String(), "no smtpshim runs with the spool") || !strings.Contains(errOut.String(), "queued as") {
		t.Fatalf("send exited %d:\n%s", code, errOut.String())
	}
}

// TestSendLogsInWithAOneTimeToken: with a relay running, send logs in
// with a token the relay issued for its connection, and the message goes
// through; the keychain is never asked for the local password.
func TestSendLogsInWithAOneTimeToken(t *testing.T) {
	sim, err := upstreamsim.Start(upstreamsim.Options{Users: map[string]string{cliUser: cliPass}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := relayLoginConfig(t, ln.Addr().String(), sim.Addr)
	store := secrets.NewMemory()
	store.Set(context.Background(), shim.LocalAuthKey, "local-pw-the-tool-never-reads")
	eng, err := shim.New(cfg, shim.Options{Secrets: store, UpstreamTLS: &tls.Config{RootCAs: sim.Cert.Pool}, Listeners: []net.Listener{ln}})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { eng.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	var out, errOut bytes.Buffer
	a := &app{configPath: cfg.Path(), stdin: strings.NewReader(relayLoginMsg), stdout: &out, stderr: &errOut}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(cfg.SpoolDir, "control.sock")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay did not open its control socket")
		}
	}
	if code := a.run([]string{"send", "-f", cliUser, "bob@example.net"}); code != 0 {
		t.Fatalf("send exited %d:\n%s", code, errOut.String())
	}
	if msgs := sim.Messages(); len(msgs) != 1 || msgs[0].From != cliUser {
		t.Fatalf("the provider got %+v", msgs)
	}
}

// TestSendRespectsTheFreeSpaceFloor: without a relay, send refuses a
// message below min_free_space instead of spooling it.
func TestSendRespectsTheFreeSpaceFloor(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := closed.Addr().String()
	closed.Close()
	cfg := relayLoginConfig(t, addr, addr)
	cfg.LocalAuth = ""
	cfg.MinFreeSpace = 1 << 45 // 32 TB
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	a := &app{configPath: cfg.Path(), stdin: strings.NewReader(relayLoginMsg), stdout: &out, stderr: &errOut}
	if code := a.run([]string{"send", "-f", cliUser, "bob@example.net"}); code != exTempFail || !strings.Contains(errOut.String(), "min_free_space") {
		t.Fatalf("send exited %d:\n%s", code, errOut.String())
	}
}
