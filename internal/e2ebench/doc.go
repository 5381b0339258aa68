// Package e2ebench holds the end-to-end benchmarks of the proxy's
// performance targets (docs/benchmarks.md): the real `orbit
// email-oauth2-proxy serve` as its own process, so the kernel's accounting
// of its CPU time, memory and descriptors is the proxy's alone, in front of
// a real Dovecot (or, for 10,000 idle sessions, a lightweight upstream) and
// the fake OAuth provider. They need root and Dovecot, like internal/e2e,
// and skip without them. `make bench` runs them and prints the table.
package e2ebench
