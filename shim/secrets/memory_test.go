package secrets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestMemoryRoundTrip(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	const acct = "alice@example.com"

	_, err := m.Get(ctx, acct)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Set: want ErrNotFound, got %v", err)
	}
	if !strings.Contains(err.Error(), acct) || !strings.Contains(err.Error(), "smtpshim account add") {
		t.Fatalf("not-found error should name the account and the fix: %v", err)
	}
	if err := m.Delete(ctx, acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete of missing entry: want ErrNotFound, got %v", err)
	}

	if err := m.Set(ctx, acct, "one"); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(ctx, "@example.com", "domain"); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Get(ctx, acct); err != nil || got != "one" {
		t.Fatalf("Get = %q, %v; want one", got, err)
	}
	if err := m.Set(ctx, acct, "two"); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Get(ctx, acct); err != nil || got != "two" {
		t.Fatalf("Get after overwrite = %q, %v; want two", got, err)
	}
	if err := m.Delete(ctx, acct); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: want ErrNotFound, got %v", err)
	}
	// Keys are independent: deleting the address left the domain key alone.
	if got, err := m.Get(ctx, "@example.com"); err != nil || got != "domain" {
		t.Fatalf("domain key = %q, %v; want domain", got, err)
	}
}

func TestMemoryRejectsEmptyAccountAndDeadContext(t *testing.T) {
	m := NewMemory()
	if err := m.Set(context.Background(), "", "x"); err == nil {
		t.Fatal("Set with empty account succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Get(ctx, "a@b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with canceled ctx: %v", err)
	}
	if err := m.Set(ctx, "a@b", "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Set with canceled ctx: %v", err)
	}
}

func TestMemoryConcurrent(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct := fmt.Sprintf("u%d@example.com", i%4)
			for j := range 200 {
				_ = m.Set(ctx, acct, fmt.Sprint(j))
				_, _ = m.Get(ctx, acct)
				if j%50 == 0 {
					_ = m.Delete(ctx, acct)
				}
			}
		}()
	}
	wg.Wait()
}
