package shim

// RelayInFlight exposes, to the engine's external tests, how many parts
// of deliveries (early MAIL FROMs, late answers) are still running.
func RelayInFlight(e *Engine) int { return e.relay.InFlight() }

// DropConnections closes an account's idle upstream connections, so that
// the next send opens (and authenticates) a new one.
func DropConnections(e *Engine, account string) { e.pool(account).CloseIdle() }
