package settings

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smtpshim/smtpshim/shim/config"
)

// HandoffName is the file, in the private spool directory, where a
// running settings page leaves its address and launch key for
// `smtpshim settings`.
const HandoffName = "settings.json"

// Handoff is what `smtpshim settings` needs to get a one-time link from
// the running settings page.
type Handoff struct {
	URL string `json:"url"`
	Key string `json:"key"`
	PID int    `json:"pid"`
}

func (s *Server) launchKeyOK(key string) bool {
	s.mu.Lock()
	want := s.launchKey
	s.mu.Unlock()
	return want != "" && subtle.ConstantTimeCompare([]byte(key), []byte(want)) == 1
}

// WriteHandoff writes the handoff file into dir (owner-only), and returns
// a function that removes it.
func (s *Server) WriteHandoff(dir string) (remove func(), err error) {
	s.mu.Lock()
	if s.launchKey == "" {
		s.launchKey = randomToken()
	}
	h := Handoff{URL: s.URL(), Key: s.launchKey, PID: os.Getpid()}
	s.mu.Unlock()
	b, _ := json.Marshal(h)
	p := filepath.Join(dir, HandoffName)
	if err := config.WriteFileAtomic(p, b, 0o600); err != nil {
		return func() {}, fmt.Errorf("settings page: %w", err)
	}
	return func() {
		// Only our own file: a newer smtpshim may have replaced it.
		if cur, err := os.ReadFile(p); err == nil && bytes.Equal(cur, b) {
			os.Remove(p)
		}
	}, nil
}

// ErrNoPage means no running smtpshim serves a settings page.
var ErrNoPage = errors.New("no running smtpshim serves a settings page")

// RequestURL asks the settings page running for spool directory dir for
// a one-time link to path.
func RequestURL(dir, path string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, HandoffName))
	if err != nil {
		return "", ErrNoPage
	}
	var h Handoff
	if json.Unmarshal(b, &h) != nil || !strings.HasPrefix(h.URL, "http://127.0.0.1:") {
		return "", ErrNoPage
	}
	req, _ := http.NewRequest(http.MethodPost, h.URL+"/launch?path="+url.QueryEscape(path), nil)
	req.Header.Set(LaunchHeader, h.Key)
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return "", ErrNoPage // a stale file from a crash
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", ErrNoPage
	}
	return strings.TrimSpace(string(body)), nil
}
