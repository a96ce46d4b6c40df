// Package api holds the wire types of smtpshim's local status API: what
// the control socket returns and what the CLI, the tray and the settings
// page read. They are API types, not the engine's internal structs, so
// the engine can change its insides without breaking a client; fields are
// only ever added.
//
// The endpoints (HTTP over the control socket, see package control):
//
//	GET    /v1/status            Status
//	GET    /v1/watch             newline-delimited JSON: one WatchItem with
//	                             Status set, then one with Event set per event
//	GET    /v1/queue             []QueueEntry
//	GET    /v1/queue/{id}        QueueEntry
//	POST   /v1/queue/retry[?id=] RetryResult
//	DELETE /v1/queue/{id}        (or POST /v1/queue/delete?id=)
//	POST   /v1/pause, /v1/resume Status (after the change)
//	POST   /v1/reload            ReloadResult
//
// Errors come back as a non-2xx status with a one-line message for people
// in the body.
package api

import "time"

// EngineState is the engine's life-cycle state.
type EngineState string

// Engine states.
const (
	Starting EngineState = "starting"
	Running  EngineState = "running"
	Paused   EngineState = "paused" // accepting and queueing, sending nothing
	Stopping EngineState = "stopping"
)

// AccountState is what a tray line says about an account.
type AccountState string

// Account states.
const (
	// AccountUnused: configured, nothing sent or tried yet.
	AccountUnused AccountState = "unused"
	// AccountOK: the last attempt reached the provider and logged in.
	AccountOK AccountState = "ok"
	// AccountFailing: the provider is unreachable or answers 4xx; mail
	// is queued and retried by itself.
	AccountFailing AccountState = "failing"
	// AccountNeedsAttention: only the user can fix it (password
	// rejected, sign-in needed, keychain unavailable, untrusted
	// certificate). The account's mail is held, not aged or bounced.
	AccountNeedsAttention AccountState = "needs_attention"
)

// Account is one configured account as the status shows it.
type Account struct {
	// Key is "alice@example.com" for an address account and
	// "@example.com" for a domain account: what the CLI accepts.
	Key    string `json:"key"`
	Server string `json:"server"`
	// Auth is "password" or "oauth2".
	Auth  string       `json:"auth"`
	State AccountState `json:"state"`
	// Problem is a short label for the state, e.g. "password rejected",
	// "sign-in needed", "keychain unavailable", "server unreachable".
	Problem   string    `json:"problem,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	Hint      string    `json:"hint,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Queued    int       `json:"queued"`
	Delivered uint64    `json:"delivered"`
}

// Status is the engine's current state: the first thing a watcher gets.
type Status struct {
	State   EngineState `json:"state"`
	Version string      `json:"version,omitempty"`
	// Seq is the Seq of the last event this status includes: the next
	// event a watcher gets is Seq+1.
	Seq uint64 `json:"seq"`
	// ConfigPath is the configuration file the engine was started with
	// (and reloads).
	ConfigPath string `json:"config_path,omitempty"`
	// SpoolDir is the engine's spool directory.
	SpoolDir string `json:"spool_dir,omitempty"`
	// PausedSince is set while the engine is paused.
	PausedSince time.Time `json:"paused_since,omitzero"`
	// Listen lists the addresses the SMTP listener serves.
	Listen []string `json:"listen"`
	// Accounts lists every configured account, in config order.
	Accounts  []Account `json:"accounts"`
	Queued    int       `json:"queued"`
	Delivered uint64    `json:"delivered"`
	Bounced   uint64    `json:"bounced"`
	// OldestQueued is when the oldest waiting message was accepted.
	OldestQueued time.Time `json:"oldest_queued,omitzero"`
	// LastError is the most recent event that carried an error.
	LastError *Event `json:"last_error,omitempty"`
}

// QueueEntry is one message waiting in the outbox.
type QueueEntry struct {
	ID        string    `json:"id"`
	Account   string    `json:"account"`
	From      string    `json:"from"`
	Rcpts     []string  `json:"rcpts"`
	Subject   string    `json:"subject,omitempty"`
	Size      int64     `json:"size"`
	Created   time.Time `json:"created"`
	Attempts  int       `json:"attempts"`
	NextTry   time.Time `json:"next_try,omitzero"`
	Held      bool      `json:"held,omitempty"` // waiting for the user (paused, or the account needs attention)
	LastError string    `json:"last_error,omitempty"`
	Hint      string    `json:"hint,omitempty"`
	// HeldBy says why a held message waits: "paused", or its account's
	// problem ("password rejected", "keychain unavailable", ...).
	HeldBy string `json:"held_by,omitempty"`
	// Refused lists recipients the provider refused for good; they get
	// a bounce once the rest is done.
	Refused []Refusal `json:"refused,omitempty"`
	// Bounce marks a delivery report on its way to the sender.
	Bounce bool `json:"bounce,omitempty"`
}

// Refusal is one recipient the provider refused permanently.
type Refusal struct {
	Rcpt       string `json:"rcpt"`
	Status     string `json:"status"`
	Diagnostic string `json:"diagnostic"`
}

// EventKind names what happened.
type EventKind string

// Event kinds.
const (
	EventDelivered    EventKind = "delivered"       // accepted upstream
	EventQueued       EventKind = "queued"          // kept on disk for a retry
	EventDeferred     EventKind = "deferred"        // a retry failed temporarily
	EventBounced      EventKind = "bounced"         // refused permanently after 250; the sender got a bounce
	EventRejected     EventKind = "rejected"        // refused while the client waited
	EventAccount      EventKind = "account"         // an account's state changed
	EventDeleted      EventKind = "deleted"         // a queued message was deleted
	EventRetry        EventKind = "retry"           // a retry was requested
	EventState        EventKind = "state"           // the engine state changed (pause, resume, stopping)
	EventReloaded     EventKind = "reloaded"        // the config was reloaded
	EventProblem      EventKind = "problem"         // something the user should know (spool not writable, …)
	EventQueueChanged EventKind = "queue"           // the queue length changed
	EventAccountAdded EventKind = "account_added"   // a reload added an account
	EventAccountGone  EventKind = "account_removed" // a reload removed an account
)

// Event is one status change. Seq increases by one per event within one
// engine run, so a watcher can tell that it missed nothing.
type Event struct {
	Seq          uint64        `json:"seq"`
	Time         time.Time     `json:"time"`
	Kind         EventKind     `json:"kind"`
	Account      string        `json:"account,omitempty"`
	MessageID    string        `json:"message_id,omitempty"`
	From         string        `json:"from,omitempty"`
	Rcpts        []string      `json:"rcpts,omitempty"`
	Error        string        `json:"error,omitempty"`
	Hint         string        `json:"hint,omitempty"`
	State        EngineState   `json:"state,omitempty"`         // EventState
	AccountState *Account      `json:"account_state,omitempty"` // the account's new state, on an event that changed it (account, delivered, account_added)
	Queued       int           `json:"queued,omitempty"`        // EventQueueChanged
	Count        int           `json:"count,omitempty"`         // EventRetry: messages made due
	Reload       *ReloadResult `json:"reload,omitempty"`        // EventReloaded
}

// RetryResult is the answer to POST /v1/queue/retry.
type RetryResult struct {
	Count int `json:"count"`
}

// WatchItem is one line of GET /v1/watch: the first carries Status, each
// later one an Event.
type WatchItem struct {
	Status *Status `json:"status,omitempty"`
	Event  *Event  `json:"event,omitempty"`
}

// ReloadResult says what a reload applied and what waits for a restart.
type ReloadResult struct {
	// Applied names the settings that changed and took effect.
	Applied []string `json:"applied"`
	// NeedsRestart holds one sentence per setting that changed but only
	// takes effect at the next start, e.g. "listen changed: restart
	// smtpshim to apply it".
	NeedsRestart []string `json:"needs_restart,omitempty"`
}
