#!/usr/bin/env python3
"""Independent side of the token interop test.

Implements the Python email OAuth 2.0 proxy's token scheme with the
`cryptography` package (PBKDF2HMAC + Fernet) and configparser, so the Go
tests can check both directions against an implementation that shares no
code with ours. One JSON request on stdin (secrets never go in argv), one
JSON answer on stdout.

Requests ("op"):
  derive     {password, salt, iterations}            -> {key}
  encrypt    {password, salt, iterations, values}    -> {tokens}
  encrypt_at {key, value, time, iv (hex)}             -> {token}
  decrypt    {password, salt, iterations, tokens}    -> {values} or {error}
  writecache {path, account, password, iterations, omit_iterations,
              values, expiry, last_activity}          -> {salt}
  readcache  {path, account, password}               -> {values, rotate, salt,
                                                         iterations} or {error}
"""
import base64
import configparser
import json
import os
import sys

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

ITERATIONS = 1_200_000
LEGACY_ITERATIONS = 100_000
SECRET_KEYS = ("access_token", "refresh_token", "client_secret_encrypted")


def fernet(password, salt_b64, iterations):
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32,
                     salt=base64.b64decode(salt_b64.encode("utf-8")),
                     iterations=iterations)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(password.encode("utf-8"))))


def main():
    req = json.load(sys.stdin)
    op = req["op"]
    if op == "derive":
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32,
                         salt=base64.b64decode(req["salt"]), iterations=req["iterations"])
        out = {"key": base64.urlsafe_b64encode(kdf.derive(req["password"].encode("utf-8"))).decode()}
    elif op == "encrypt":
        f = fernet(req["password"], req["salt"], req["iterations"])
        out = {"tokens": {k: f.encrypt(v.encode("utf-8")).decode("utf-8") for k, v in req["values"].items()}}
    elif op == "encrypt_at":
        # Fixed time and IV, for a byte-for-byte comparison with Go's output.
        f = Fernet(req["key"])
        tok = f._encrypt_from_parts(req["value"].encode("utf-8"), req["time"], bytes.fromhex(req["iv"]))
        out = {"token": tok.decode("utf-8")}
    elif op == "decrypt":
        f = fernet(req["password"], req["salt"], req["iterations"])
        try:
            out = {"values": {k: f.decrypt(v.encode("utf-8")).decode("utf-8") for k, v in req["tokens"].items()}}
        except InvalidToken:
            out = {"error": "InvalidToken"}
    elif op == "writecache":
        # What the Python proxy does when it saves an account to its cache
        # store: a configparser file, token keys only, other sections kept.
        cp = configparser.ConfigParser(interpolation=None)
        if os.path.exists(req["path"]):
            cp.read(req["path"])
        acct = req["account"]
        salt = base64.b64encode(os.urandom(16)).decode("utf-8")
        f = fernet(req["password"], salt, req["iterations"])
        if not cp.has_section(acct):
            cp.add_section(acct)
        cp.set(acct, "token_salt", salt)
        if not req.get("omit_iterations"):
            cp.set(acct, "token_iterations", str(req["iterations"]))
        for k, v in req["values"].items():
            cp.set(acct, k, f.encrypt(v.encode("utf-8")).decode("utf-8"))
        cp.set(acct, "access_token_expiry", str(req["expiry"]))
        cp.set(acct, "last_activity", str(req["last_activity"]))
        with open(req["path"], "w") as fh:
            cp.write(fh)
        out = {"salt": salt}
    elif op == "readcache":
        # What the Python proxy does at login: try the current, stored and
        # legacy counts, highest first, and say whether it would rotate.
        cp = configparser.ConfigParser(interpolation=None)
        cp.read(req["path"])
        acct = req["account"]
        salt = cp.get(acct, "token_salt")
        stored = cp.getint(acct, "token_iterations", fallback=LEGACY_ITERATIONS)
        counts = sorted({ITERATIONS, stored, LEGACY_ITERATIONS}, reverse=True)
        if "counts" in req:  # tests run with lower counts for speed
            counts = sorted(set(req["counts"]) | {stored}, reverse=True)
        fernets = [fernet(req["password"], salt, n) for n in counts]
        multi = MultiFernet(fernets)
        values, rotate = {}, False
        try:
            for k in SECRET_KEYS:
                if cp.has_option(acct, k):
                    v = cp.get(acct, k).encode("utf-8")
                    values[k] = multi.decrypt(v).decode("utf-8")
                    try:
                        fernets[0].decrypt(v)
                    except InvalidToken:
                        rotate = True
            out = {"values": values, "rotate": rotate, "salt": salt, "iterations": stored,
                   "expiry": cp.get(acct, "access_token_expiry", fallback=""),
                   "last_activity": cp.get(acct, "last_activity", fallback="")}
        except InvalidToken:
            out = {"error": "InvalidToken"}
    else:
        raise SystemExit("unknown op " + op)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
