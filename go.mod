module github.com/smtpshim/smtpshim

go 1.26.0

toolchain go1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/Microsoft/go-winio v0.6.4
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6
	github.com/emersion/go-smtp v0.25.1
	github.com/godbus/dbus/v5 v5.2.2
	github.com/zalando/go-keyring v0.2.8
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
	golang.org/x/term v0.47.0
)

require (
	github.com/danieljoos/wincred v1.2.3 // indirect
	golang.org/x/text v0.43.0 // indirect
)

// go-smtp v0.25.1 with a block-wise DATA reader and dot-stuffing writer,
// BDAT and pre-stuffed bodies in the client, and one write per pipelined
// batch in the server; see shim/third_party/go-smtp/PATCH.md. It can go
// when a go-smtp release carries these (the DATA reader is
// emersion/go-smtp#312, open as of v0.25.1).
replace github.com/emersion/go-smtp => ./shim/third_party/go-smtp
