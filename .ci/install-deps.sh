#!/usr/bin/env bash
# Installs every Debian package and Go tool the tests need. Idempotent and
# non-interactive: CI runs it on a fresh machine, developers may run it again.
#
# Services must never start on the host as a side effect: Dovecot's package
# would otherwise run a system-wide instance bound to 143/993/110/995/587,
# and every test starts its own Dovecot on free loopback ports instead
# (likewise openssh-server: the --host test runs its own sshd on a free
# loopback port, never a host sshd on port 22; sudo is there for the
# --ssh-sudo tests, which log in as non-root users; groff-base for the test
# that renders every man page with warnings on). A
# policy-rc.d that denies every start (exit 101) covers both invoke-rc.d and
# deb-systemd-invoke for the duration of the install.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

packages=(
  dovecot-imapd dovecot-pop3d dovecot-submissiond
  curl python3 python3-cryptography fetchmail msmtp
  systemd dbus systemd-journal-remote iproute2 util-linux
  openssh-server sudo
  groff-base
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]} (run: sudo $0)" >&2
    exit 1
  fi
  policy=/usr/sbin/policy-rc.d
  ours=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Written by orbit .ci/install-deps.sh while it installs packages.\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    ours=1
  fi
  cleanup() { if [ "$ours" -eq 1 ]; then rm -f "$policy"; fi; }
  trap cleanup EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >/dev/null
  echo "install-deps: installed ${missing[*]}"
fi

# A host Dovecot, if a package start slipped through anyway (or an older
# machine has one), holds the well-known ports; stop it rather than let
# tests collide with it. The per-test instances use their own base_dir, so
# this only ever matches the system instance's pid file.
if [ -s /run/dovecot/master.pid ] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
  echo "install-deps: stopping the host's system Dovecot (pid $(cat /run/dovecot/master.pid))" >&2
  doveadm stop 2>/dev/null || kill "$(cat /run/dovecot/master.pid)" || true
fi

# staticcheck, pinned; the go tool chain comes with the machine.
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH 2>/dev/null || echo /root/go)/bin"
if ! command -v staticcheck >/dev/null 2>&1 || ! staticcheck -version 2>/dev/null | grep -qF "(0.8.2)"; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
  echo "install-deps: installed staticcheck v0.8.2 into $(go env GOPATH)/bin"
fi
