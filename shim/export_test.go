package shim

// RelayInFlight exposes, to the engine's external tests, how many parts
// of deliveries (early MAIL FROMs, late answers) are still running.
func RelayInFlight(e *Engine) int { return e.relay.InFlight() }
