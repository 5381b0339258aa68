// Package testenv holds what every end-to-end test of orbit shares: a
// throwaway certificate authority and server certificate, free loopback
// ports, waiting for a listener, building the orbit binary once per test
// binary, and directories that processes running as other users (Dovecot
// drops to dovecot/dovenull/nobody) or inside the systemd sandbox (which
// hides the host's /tmp and /var/tmp behind a tmpfs) can still reach.
//
// The heavier pieces live in sub-packages:
//
//   - fakeoauth: an OAuth 2.0 provider on loopback with failure knobs and a
//     test "browser";
//   - smtpsink: the SMTP server Dovecot's submission service relays to;
//   - dovecot: a real Dovecot per test, TLS on, XOAUTH2/OAUTHBEARER only,
//     tokens checked at the fake provider's introspection endpoint;
//   - sandbox: a real systemd as PID 1 of a private PID and mount namespace.
//   - golden: output compared with testdata/ files (go test -update rewrites them).
//
// A typical end-to-end test of the proxy:
//
//	p := fakeoauth.Start(t)
//	p.AddUser("alice@example.test", "pw")
//	p.AddClient(fakeoauth.Client{ID: "app", Secret: "s", ServiceUser: "alice@example.test"})
//	dc := dovecot.Start(t, dovecot.Options{IntrospectURL: p.IntrospectURL()})
//	bin := testenv.BuildOrbit(t)
//	// write the config with `orbit email-oauth2-proxy register` pointing
//	// token_url at p.TokenURL() and the server sections at dc.IMAPAddr()
//	// (implicit TLS), dc.POP3Addr() (implicit TLS), dc.SubmissionAddr()
//	// (server_starttls = True); run `serve` with dc.TLS.Env() in its
//	// environment so it trusts the test CA; then log in with curl or
//	// Python as a mail client would, and assert p.GrantCount(...),
//	// dc.Sink.Messages(), what IMAP/POP3 return.
//
// Every helper that needs root or an installed tool skips the test with the
// reason and the fix (.ci/install-deps.sh) when it is missing; CI has them.
// Nothing here sends traffic anywhere but loopback.
package testenv
