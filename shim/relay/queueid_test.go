package relay

import "testing"

func TestQueueIDFromProviderReplies(t *testing.T) {
	for resp, want := range map[string]string{
		"2.0.0 Ok: queued as 4XyZ1b2C3d": "4XyZ1b2C3d",
		"Ok: queued as SIM00001":         "SIM00001",
		"2.0.0 OK  1733050000 d9443c01a7336-21f2b19a5d7si1234567pfb.200 - gsmtp": "d9443c01a7336-21f2b19a5d7si1234567pfb.200",
		"2.0.0 OK <DB8P194MB0693.EURP194.PROD.OUTLOOK.COM> [Hostname=x]":         "DB8P194MB0693.EURP194.PROD.OUTLOOK.COM",
		"<20261201.abc@mail.example> Queued mail for delivery":                   "20261201.abc@mail.example",
		"OK id=1tHgQz-000Abc-2x": "1tHgQz-000Abc-2x",
		"2.0.0 Message accepted": "",
	} {
		if got := queueID(resp); got != want {
			t.Errorf("queueID(%q) = %q, want %q", resp, got, want)
		}
	}
}
