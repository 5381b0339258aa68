package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/smtpsink"
)

// The mail clients are Python's standard library, the same modules many
// mailers are built on. Scripts read everything from the environment, so
// no credential is ever in a process's argv.

const pySMTPSend = `
import os, smtplib, base64, sys
s = smtplib.SMTP("127.0.0.1", int(os.environ["PORT"]), timeout=60)
s.ehlo("mailer.example.test")
s.login(os.environ["USER"], os.environ["PASS"])
msg = base64.b64decode(os.environ["MSG"])
s.sendmail(os.environ["FROM"], [os.environ["TO"]], msg)
s.quit()
print("SENT")
`

const pyIMAPFetchAll = `
import os, imaplib, base64
m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]), timeout=60)
m.login(os.environ["USER"], os.environ["PASS"])
typ, _ = m.select("INBOX")
typ, data = m.search(None, "ALL")
for num in data[0].split():
    typ, parts = m.fetch(num, "(BODY.PEEK[])")
    print("MSG " + base64.b64encode(parts[0][1]).decode())
m.logout()
print("DONE")
`

const pyPOPFetchAll = `
import os, poplib, base64
p = poplib.POP3("127.0.0.1", int(os.environ["PORT"]), timeout=60)
p.user(os.environ["USER"])
p.pass_(os.environ["PASS"])
count, _ = p.stat()
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    print("MSG " + base64.b64encode(b"\r\n".join(lines) + b"\r\n").decode())
p.quit()
print("DONE")
`

const pyIMAPLogin = `
import os, imaplib
m = imaplib.IMAP4("127.0.0.1", int(os.environ["PORT"]), timeout=120)
try:
    m.login(os.environ["USER"], os.environ["PASS"])
except imaplib.IMAP4.error as e:
    print("REFUSED " + str(e))
    raise SystemExit(0)
print("LOGGED-IN")
m.logout()
`

func (e *env) smtpSend(user, password, from, to string, msg []byte) (string, error) {
	return e.python(pySMTPSend, "PORT="+strconv.Itoa(e.smtpPort), "USER="+user, "PASS="+password,
		"FROM="+from, "TO="+to, "MSG="+base64.StdEncoding.EncodeToString(msg))
}

// mailThrough sends msg with smtplib through the proxy and waits (20 s at
// most) until Dovecot's submission service relayed it to the sink; what
// names the step in a failure.
func (e *env) mailThrough(what, user, password, from, to string, msg []byte) smtpsink.Message {
	e.t.Helper()
	if out, err := e.smtpSend(user, password, from, to, msg); err != nil || !strings.Contains(out, "SENT") {
		e.t.Fatalf("%s: %v\n%s", what, err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := e.dc.Sink.Wait(ctx, 1)
	if err != nil {
		e.t.Fatalf("Dovecot relayed nothing: %v", err)
	}
	return got[0]
}

// imapFetchAll returns every message in the INBOX, as the server sent it.
func (e *env) imapFetchAll(user, password string) ([][]byte, string, error) {
	out, err := e.python(pyIMAPFetchAll, "PORT="+strconv.Itoa(e.imapPort), "USER="+user, "PASS="+password)
	return parseMsgs(out), out, err
}

func (e *env) popFetchAll(user, password string) ([][]byte, string, error) {
	out, err := e.python(pyPOPFetchAll, "PORT="+strconv.Itoa(e.popPort), "USER="+user, "PASS="+password)
	return parseMsgs(out), out, err
}

// imapLogin reports "LOGGED-IN" or "REFUSED <server's text>".
func (e *env) imapLogin(user, password string) (string, error) {
	out, err := e.python(pyIMAPLogin, "PORT="+strconv.Itoa(e.imapPort), "USER="+user, "PASS="+password)
	return strings.TrimSpace(out), err
}

func parseMsgs(out string) [][]byte {
	var msgs [][]byte
	for _, line := range strings.Split(out, "\n") {
		if b64, ok := strings.CutPrefix(line, "MSG "); ok {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
			if err == nil {
				msgs = append(msgs, b)
			}
		}
	}
	return msgs
}

// testMessage is a small RFC 5322 message with a unique subject.
func testMessage(from, to, subject string) []byte {
	return []byte(fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@e2e.example.test>\r\n\r\nAccess request #4711 needs your approval.\r\nLine two, with trailing spaces   \r\n.leading dot line\r\n", from, to, subject, strings.ReplaceAll(subject, " ", "-")))
}

func itoa(i int) string { return strconv.Itoa(i) }
