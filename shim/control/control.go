// Package control is the local status API of a running smtpshim, the
// way its command-line tools, the tray and the settings page reach it:
// HTTP over a Unix socket in the spool directory, which only the owning
// user can open. The wire types are those of package api; the endpoints
// are listed there.
//
// Like Tailscale's LocalAPI, a UI learns everything through it: GET
// /v1/watch streams the current status and then every event, as
// newline-delimited JSON, so a UI never polls and never misses a change.
package control

import (
	"encoding/json"
	"net/http"
	"path/filepath"

	"github.com/smtpshim/smtpshim/shim/api"
	"github.com/smtpshim/smtpshim/shim/events"
)

// SocketName is the socket's file name inside the spool directory.
const SocketName = "control.sock"

// SocketPath returns the control socket for a spool directory.
func SocketPath(spoolDir string) string { return filepath.Join(spoolDir, SocketName) }

// Commands is what the running engine offers.
type Commands interface {
	Status() api.Status
	// Watch returns the status and every later event; the caller stops it.
	Watch(buffer int) *events.Watcher
	QueueEntries() []api.QueueEntry
	QueueEntry(id string) (api.QueueEntry, bool)
	RetryNow(id string) int
	Delete(id string) error
	Pause() error
	Resume() error
	Reload() (api.ReloadResult, error)
}

// Handler serves the control API.
func Handler(c Commands) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, c.Status()) })
	mux.HandleFunc("GET /v1/watch", func(w http.ResponseWriter, r *http.Request) { watch(c, w, r) })
	mux.HandleFunc("GET /v1/queue", func(w http.ResponseWriter, r *http.Request) {
		l := c.QueueEntries()
		if l == nil {
			l = []api.QueueEntry{}
		}
		writeJSON(w, l)
	})
	mux.HandleFunc("GET /v1/queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := c.QueueEntry(r.PathValue("id"))
		if !ok {
			http.Error(w, "no queued message "+r.PathValue("id"), http.StatusNotFound)
			return
		}
		writeJSON(w, m)
	})
	mux.HandleFunc("POST /v1/queue/retry", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		n := c.RetryNow(id)
		if id != "" && n == 0 {
			http.Error(w, "no queued message "+id, http.StatusNotFound)
			return
		}
		writeJSON(w, api.RetryResult{Count: n})
	})
	del := func(w http.ResponseWriter, id string) {
		if err := c.Delete(id); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	mux.HandleFunc("DELETE /v1/queue/{id}", func(w http.ResponseWriter, r *http.Request) { del(w, r.PathValue("id")) })
	// The same for clients that only POST (an HTML form, curl -d).
	mux.HandleFunc("POST /v1/queue/delete", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		if id == "" {
			http.Error(w, "which message? give ?id=ID", http.StatusBadRequest)
			return
		}
		del(w, id)
	})
	for path, fn := range map[string]func() error{"/v1/pause": c.Pause, "/v1/resume": c.Resume} {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			if err := fn(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			writeJSON(w, c.Status())
		})
	}
	if ti, ok := c.(TokenIssuer); ok {
		mux.HandleFunc("POST /v1/local-token", func(w http.ResponseWriter, r *http.Request) {
			tok, err := ti.LocalAuthToken(r.URL.Query().Get("client"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			writeJSON(w, tokenReply{Token: tok})
		})
	}
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		res, err := c.Reload()
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		writeJSON(w, res)
	})
	return mux
}

// watch streams the status, then one event per line, each flushed at
// once. It ends when the client goes away, the engine stops, or the
// client falls so far behind that events would be lost: then the stream
// simply ends, and the client watches again for a fresh status.
func watch(c Commands, w http.ResponseWriter, r *http.Request) {
	wt := c.Watch(0)
	defer wt.Stop()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	if enc.Encode(api.WatchItem{Status: &wt.Status}) != nil || rc.Flush() != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-wt.C:
			if !ok {
				return
			}
			ae := e.API()
			if enc.Encode(api.WatchItem{Event: &ae}) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
