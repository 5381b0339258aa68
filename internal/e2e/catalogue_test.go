package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/errcatalog"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// TestE2EProviderErrorsExplained: for every token-endpoint entry of the
// provider error catalogue, the fake provider answers with the entry's own
// example; the mailer's login reply carries the catalogue's meaning and
// fix, serve's log and the status file those and the provider's own words,
// and the next login (the provider accepting again) works.
func TestE2EProviderErrorsExplained(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.serve()

	checked := 0
	for _, entry := range errcatalog.All() {
		if !entry.From(errcatalog.TokenEndpoint) {
			continue
		}
		code, desc, _ := strings.Cut(entry.Examples[0], ": ")
		status := http.StatusBadRequest
		if code == "invalid_client" {
			status = http.StatusUnauthorized
		}
		e.prov.RefuseNextWith(1, status, code, desc)
		reply := e.imapLoginReply(alice, mailerPassword)
		if entry.Generic() {
			// A code any provider sends: its description stays in the
			// reply, the catalogue's fix follows.
			if !strings.Contains(reply, desc) || !strings.Contains(reply, "Fix: "+entry.Fix[:20]) {
				t.Errorf("%s: IMAP reply %q\nwant the provider's description and the fix", entry.ID, reply)
			}
			continue
		}
		if !strings.HasPrefix(reply, "L1 NO ") || !strings.Contains(reply, entry.Hint()) {
			t.Errorf("%s: IMAP reply %q\nwant the provider's answer and %q", entry.ID, reply, entry.Hint())
			continue
		}
		// The provider's own words go to the log and the status file,
		// where a reply line's length limit does not cut them.
		words := strings.SplitN(desc, ".", 2)[0]
		e.waitLog(words, 5*time.Second)
		st, err := oauth.ReadStatus(e.status)
		if err != nil {
			t.Fatal(err)
		}
		if a := st.Accounts[alice]; a.State != oauth.StateFailing || !strings.Contains(a.Reason, entry.Hint()) || !strings.Contains(a.Reason, words) {
			t.Errorf("%s: status file %+v, want failing with the hint and the provider's words", entry.ID, a)
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("checked %d catalogue entries, want every token-endpoint one (at least 10)", checked)
	}
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Fatalf("once the provider accepts again: %q", r)
	}
}
