package settings

import (
	"html"
	"html/template"
	"net/http"
	"strings"
)

// client is one step-by-step page of the setup guide.
type client struct {
	ID, Name, Where string
	Steps           []string // %HOST%, %PORT% and %AUTH% are filled in
}

// The ISP pages people remember say "tick My server requires
// authentication"; for smtpshim it is the opposite, so every guide says
// so at the step where the box is.
var clients = []client{
	{ID: "outlook-express", Name: "Outlook Express", Where: "Windows XP and earlier", Steps: []string{
		"Open <b>Tools</b> › <b>Accounts…</b>, choose the <b>Mail</b> tab, select your account and press <b>Properties</b>.",
		"On the <b>Servers</b> tab, set <b>Outgoing mail (SMTP)</b> to <kbd>%HOST%</kbd>.",
		"%AUTH_OE%",
		"On the <b>Advanced</b> tab, set <b>Outgoing mail (SMTP)</b> to <kbd>%PORT%</kbd> and clear <b>This server requires a secure connection (SSL)</b>.",
		"Press <b>OK</b>, then <b>Close</b>. Send yourself a test message.",
	}},
	{ID: "windows-live-mail", Name: "Windows Live Mail", Where: "Windows 7 and Vista", Steps: []string{
		"On the <b>Accounts</b> tab, press <b>Properties</b> (or right-click the account and choose <b>Properties</b>).",
		"On the <b>Servers</b> tab, set <b>Outgoing mail (SMTP)</b> to <kbd>%HOST%</kbd>.",
		"%AUTH_OE%",
		"On the <b>Advanced</b> tab, set <b>Outgoing mail (SMTP)</b> to <kbd>%PORT%</kbd> and clear <b>This server requires a secure connection (SSL)</b>.",
		"Press <b>OK</b>. Send yourself a test message.",
	}},
	{ID: "outlook", Name: "Outlook 2003, 2007 and 2010", Where: "Microsoft Office", Steps: []string{
		"Outlook 2003/2007: <b>Tools</b> › <b>Account Settings…</b> (2003: <b>E-mail Accounts…</b> › <b>View or change existing accounts</b>). Outlook 2010: <b>File</b> › <b>Account Settings</b> › <b>Account Settings…</b>. Select the account and press <b>Change…</b>.",
		"Set <b>Outgoing mail server (SMTP)</b> to <kbd>%HOST%</kbd>.",
		"Press <b>More Settings…</b>. %AUTH_OUTLOOK%",
		"On the <b>Advanced</b> tab, set <b>Outgoing server (SMTP)</b> to <kbd>%PORT%</kbd> and <b>Use the following type of encrypted connection</b> to <b>None</b>.",
		"Press <b>OK</b>, then <b>Next</b>: Outlook sends a test message. Then <b>Finish</b>.",
	}},
	{ID: "eudora", Name: "Eudora", Where: "Windows and classic Mac OS", Steps: []string{
		"Open <b>Tools</b> › <b>Options…</b> (Mac: <b>Special</b> › <b>Settings…</b>) and choose <b>Sending Mail</b>.",
		"Set <b>SMTP Server</b> to <kbd>%HOST%:%PORT%</kbd> (older versions without a port field: see the note below).",
		"%AUTH_EUDORA%",
		"Set <b>Secure Sockets when Sending</b> to <b>Never</b>.",
		"Press <b>OK</b>. Send yourself a test message.",
	}},
	{ID: "thunderbird", Name: "Thunderbird", Where: "any version", Steps: []string{
		"Open <b>Account Settings</b> and choose <b>Outgoing Server (SMTP)</b> at the bottom of the list. Select the server and press <b>Edit…</b> (or <b>Add…</b>).",
		"Set <b>Server Name</b> to <kbd>%HOST%</kbd> and <b>Port</b> to <kbd>%PORT%</kbd>.",
		"Set <b>Connection security</b> to <b>None</b>.",
		"%AUTH_TB%",
		"Press <b>OK</b>. In the account's own page, pick this server as its <b>Outgoing Server (SMTP)</b>.",
	}},
	{ID: "apple-mail", Name: "Apple Mail", Where: "Mac OS X", Steps: []string{
		"Open <b>Mail</b> › <b>Preferences…</b> › <b>Accounts</b>, select the account, and open the <b>Outgoing Mail Server (SMTP)</b> menu › <b>Edit SMTP Server List…</b>.",
		"Press <b>+</b>, and set <b>Server Name</b> to <kbd>%HOST%</kbd>.",
		"On the <b>Advanced</b> tab, choose <b>Use custom port</b> <kbd>%PORT%</kbd> and clear <b>Use Secure Sockets Layer (SSL)</b>.",
		"%AUTH_APPLE%",
		"Press <b>OK</b>, and pick the new server for the account.",
	}},
	{ID: "scanner", Name: "Scan-to-email printer or copier", Where: "any brand: the menus differ, the values do not", Steps: []string{
		"Open the device's web page (type its IP address into a browser) or its front panel, and find <b>E-mail</b>, <b>SMTP</b> or <b>Scan to E-mail</b> settings.",
		"Set the <b>SMTP server</b> to the address of the computer running smtpshim, <kbd>%HOST%</kbd>, and the <b>port</b> to <kbd>%PORT%</kbd>.",
		"Set <b>SSL/TLS</b> or <b>Secure connection</b> to <b>Off</b> or <b>None</b>.",
		"%AUTH_SCANNER%",
		"Set the <b>sender</b> (\"From\" or \"Device e-mail address\") to an address smtpshim has an account for: mail from any other sender is refused.",
		"Use the device's <b>Test</b> or <b>Send test e-mail</b> button, then check Activity here.",
	}},
	{ID: "script", Name: "A script or cron job", Where: "on this computer", Steps: []string{
		"Pipe a whole message to <kbd>smtpshim send -t</kbd>: it reads the recipients from the To, Cc and Bcc lines, like sendmail.",
		"For example: <kbd>printf 'From: you@example.com\\nTo: boss@example.com\\nSubject: Backup done\\n\\nAll good.\\n' | smtpshim send -t</kbd>",
		"<kbd>-f you@example.com</kbd> sets the envelope sender; recipients can also follow on the command line.",
		"Exit code 0 means smtpshim has the message (sent or safely queued); any other code means it does not, with the reason on standard error.",
		"Programs that talk SMTP themselves (Python's smtplib, PHP's mail settings) use server <kbd>%HOST%</kbd>, port <kbd>%PORT%</kbd>, no TLS and no login.",
	}},
}

func authStep(kind string, l listen) string {
	if l.LAN {
		return map[string]string{
			"OE":      "Tick <b>My server requires authentication</b>, press <b>Settings…</b>, and log on with any user name and smtpshim's <b>local password</b> (set with <kbd>smtpshim local-password</kbd>), not your provider's password.",
			"OUTLOOK": "On the <b>Outgoing Server</b> tab, tick <b>My outgoing server (SMTP) requires authentication</b> and <b>Log on using</b> any user name and smtpshim's <b>local password</b>, not your provider's password.",
			"EUDORA":  "Tick <b>Allow authentication</b>: Eudora then sends your user name and smtpshim's <b>local password</b>.",
			"TB":      "Set <b>Authentication method</b> to <b>Normal password</b>, with any user name; Thunderbird asks for smtpshim's <b>local password</b> on the first send.",
			"APPLE":   "Set <b>Authentication</b> to <b>Password</b>, with any user name and smtpshim's <b>local password</b>.",
			"SCANNER": "Turn <b>SMTP authentication</b> on, with any user name and smtpshim's <b>local password</b> (not your provider's password).",
		}[kind]
	}
	return map[string]string{
		"OE":      "Under <b>Outgoing Mail Server</b>, make sure <b>My server requires authentication</b> is <b>not</b> ticked. Your provider's help page says to tick it: with smtpshim, don't. smtpshim logs in for you.",
		"OUTLOOK": "On the <b>Outgoing Server</b> tab, make sure <b>My outgoing server (SMTP) requires authentication</b> is <b>not</b> ticked. smtpshim logs in to your provider for you.",
		"EUDORA":  "Clear <b>Allow authentication</b>. smtpshim logs in to your provider for you.",
		"TB":      "Set <b>Authentication method</b> to <b>No authentication</b>. smtpshim logs in to your provider for you.",
		"APPLE":   "Set <b>Authentication</b> to <b>None</b>. smtpshim logs in to your provider for you.",
		"SCANNER": "Turn <b>SMTP authentication</b> <b>off</b> (no user name, no password). smtpshim logs in to your provider for you.",
	}[kind]
}

func (c client) render(l listen) []template.HTML {
	r := strings.NewReplacer("%HOST%", html.EscapeString(l.Host), "%PORT%", html.EscapeString(l.Port),
		"%AUTH_OE%", authStep("OE", l), "%AUTH_OUTLOOK%", authStep("OUTLOOK", l), "%AUTH_EUDORA%", authStep("EUDORA", l),
		"%AUTH_TB%", authStep("TB", l), "%AUTH_APPLE%", authStep("APPLE", l), "%AUTH_SCANNER%", authStep("SCANNER", l))
	var out []template.HTML
	if c.ID == "scanner" && !l.Network {
		out = append(out, template.HTML("First: smtpshim listens only to programs on this computer now. A printer or scanner on the network needs smtpshim's <b>LAN mode</b> (a <kbd>listen</kbd> address on the network and <kbd>allow_networks</kbd> in the settings file; see the README)."))
	}
	for _, s := range c.Steps {
		out = append(out, template.HTML(r.Replace(s))) // the steps are this file's own HTML
	}
	return out
}

type guideData struct {
	Listen  listen
	Clients []client
	Client  *client
	Steps   []template.HTML
}

func (s *Server) guideIndex(w http.ResponseWriter, r *http.Request) {
	st := s.status(r)
	cfg, _ := s.loadConfig()
	s.render(w, r, "guide", page{Title: "Set up your mail program", Nav: "guide", Status: st, Data: guideData{Listen: listenInfo(st, cfg), Clients: clients}})
}

func (s *Server) guidePage(w http.ResponseWriter, r *http.Request) {
	st := s.status(r)
	cfg, _ := s.loadConfig()
	l := listenInfo(st, cfg)
	for i := range clients {
		if clients[i].ID == r.PathValue("client") {
			c := &clients[i]
			s.render(w, r, "guide", page{Title: c.Name, Nav: "guide", Status: st, Data: guideData{Listen: l, Clients: clients, Client: c, Steps: c.render(l)}})
			return
		}
	}
	http.NotFound(w, r)
}
