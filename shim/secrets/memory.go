package secrets

import (
	"context"
	"sync"
)

// Memory is a Store that forgets everything when the process exits. It
// backs the demo mode and tests, where touching the real keychain would be
// slow, interactive or would leave entries behind.
type Memory struct {
	mu      sync.RWMutex
	secrets map[string]string
}

// NewMemory returns an empty Memory that is safe for concurrent use, since
// the relay serves several SMTP sessions at once.
func NewMemory() *Memory {
	return &Memory{secrets: make(map[string]string)}
}

// Get returns the stored secret. It honours ctx only up front: the lookup
// itself cannot block.
func (m *Memory) Get(ctx context.Context, account string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if account == "" {
		return "", errEmptyAccount
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.secrets[account]
	if !ok {
		return "", notFound("memory store", account)
	}
	return s, nil
}

// Set stores or replaces the secret for account. Like Get it refuses a dead
// ctx, so code tested against Memory sees the cancellation behaviour of the
// real stores.
func (m *Memory) Set(ctx context.Context, account, secret string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if account == "" {
		return errEmptyAccount
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.secrets[account] = secret
	return nil
}

// Delete removes the secret for account, reporting ErrNotFound like the
// keychain does so that tests written against Memory hold for both.
func (m *Memory) Delete(ctx context.Context, account string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if account == "" {
		return errEmptyAccount
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.secrets[account]; !ok {
		return notFound("memory store", account)
	}
	delete(m.secrets, account)
	return nil
}
