// Package e2e holds the end-to-end scenarios: the built orbit binary,
// configured by `orbit email-oauth2-proxy register` and run with `serve` as
// its own process, between real mail clients (curl, Python's imaplib, poplib
// and smtplib) and a real Dovecot that accepts only XOAUTH2 over TLS, with
// the fake OAuth 2.0 provider of internal/testenv/fakeoauth standing in for
// Microsoft and Google. Each scenario is one named Go test; they need root
// and Dovecot (CI installs both with .ci/install-deps.sh) and skip with the
// reason otherwise.
package e2e
