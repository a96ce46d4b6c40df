package main

import (
	"github.com/smtpshim/smtpshim/shim/addr"
	"github.com/smtpshim/smtpshim/shim/config"
	"github.com/smtpshim/smtpshim/shim/spool"
)

// checkEnvelope refuses a sender or recipient that the relay would refuse
// too: without the relay, sendDirect writes them to the provider itself,
// and an address that needs quoting (say, from a web form's From: header)
// must not carry SMTP parameters there.
func checkEnvelope(o *sendOptions) error {
	if _, err := addr.Parse(o.from); err != nil {
		return exit(exDataErr, "sender %v", err)
	}
	for _, r := range o.rcpts {
		if _, err := addr.Parse(r); err != nil {
			return exit(exDataErr, "recipient %v", err)
		}
	}
	return nil
}

// checkFreeSpace refuses a message, as the relay does, when the spool's
// disk has less free space than min_free_space.
func checkFreeSpace(cfg *config.Config, sp *spool.Spool) error {
	free, err := sp.FreeSpace()
	if floor := cfg.EffectiveMinFreeSpace(); err == nil && free < uint64(floor) {
		return exit(exTempFail, "the disk of smtpshim's spool %s has only %d MB free, below min_free_space (%d MB): free disk space and try again", sp.Dir(), free>>20, floor>>20)
	}
	return nil
}
