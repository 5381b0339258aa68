package tokens

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// python runs testdata/interop.py with one JSON request. The script uses
// Python's `cryptography` package (an implementation independent of ours)
// and configparser, as the Python proxy does. Secrets go through stdin.
func python(t testing.TB, req map[string]any) map[string]any {
	t.Helper()
	py, missing := findPython()
	if missing != "" {
		t.Skip(missing)
	}
	in, _ := json.Marshal(req)
	cmd := exec.Command(py, filepath.Join("testdata", "interop.py"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("interop.py %s: %v\n%s", req["op"], err, stderr.String())
	}
	var resp map[string]any
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("interop.py %s answered %q: %v", req["op"], out, err)
	}
	return resp
}

var findPython = sync.OnceValues(func() (path, missing string) {
	py, err := exec.LookPath("python3")
	if err != nil {
		return "", "python3 is not installed; the interop test needs it (Debian: python3 python3-cryptography)"
	}
	if out, err := exec.Command(py, "-c", "import cryptography").CombinedOutput(); err != nil {
		return "", "python3 has no cryptography module (Debian: python3-cryptography): " + string(bytes.TrimSpace(out))
	}
	return py, ""
})

func TestTokenInterop(t *testing.T) {
	ctx := context.Background()
	const pw = "Pässwörd ✓ with spaces"

	t.Run("PBKDF2 keys match", func(t *testing.T) {
		for _, tt := range []struct {
			pw, salt string
			n        int
		}{
			{pw, "AAAAAAAAAAAAAAAAAAAAAA==", 1000},
			{"", "/+/+/+/+/+/+/+/+/+/+/w==", 1},
			{"plain", "3q2+7wABAgMEBQYHCAkKCw==", 2000},
		} {
			resp := python(t, map[string]any{"op": "derive", "password": tt.pw, "salt": tt.salt, "iterations": tt.n})
			k, err := DeriveKey(tt.pw, tt.salt, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if k.Encoded() != resp["key"] {
				t.Errorf("salt %s, %d iterations: Go key differs from Python's", tt.salt, tt.n)
			}
		}
	})

	t.Run("Fernet bytes match for fixed time and IV", func(t *testing.T) {
		k, _ := DeriveKey(pw, "AAAAAAAAAAAAAAAAAAAAAA==", 1000)
		var iv [16]byte
		copy(iv[:], "0123456789abcdef")
		for _, msg := range []string{"", "hello", strings.Repeat("é", 40)} {
			resp := python(t, map[string]any{"op": "encrypt_at", "key": k.Encoded(), "value": msg, "time": 1700000000, "iv": hex.EncodeToString(iv[:])})
			if got := fernetEncryptAt(k, []byte(msg), time.Unix(1700000000, 0), iv); got != resp["token"] {
				t.Errorf("message %q:\n go     %s\n python %s", msg, got, resp["token"])
			}
		}
	})

	salt, _ := NewSalt()
	values := map[string]any{"access_token": "at-" + pw, "refresh_token": "0.AR8A-rt", "client_secret_encrypted": "c~s"}

	t.Run("Python encrypts, Go decrypts", func(t *testing.T) {
		resp := python(t, map[string]any{"op": "encrypt", "password": pw, "salt": salt, "iterations": 2000, "values": values})
		toks := resp["tokens"].(map[string]any)
		s := Sealed{Salt: salt, Iterations: 2000, AccessToken: toks["access_token"].(string),
			RefreshToken: toks["refresh_token"].(string), ClientSecretEncrypted: toks["client_secret_encrypted"].(string)}
		rec, rotate, err := fastCodec().Open(ctx, "a@x", pw, s)
		if err != nil || rotate {
			t.Fatalf("Open = rotate %v, %v", rotate, err)
		}
		if rec.AccessToken != values["access_token"] || rec.RefreshToken != values["refresh_token"] || rec.ClientSecret != values["client_secret_encrypted"] {
			t.Errorf("decrypted %+v", rec)
		}
		if _, _, err := fastCodec().Open(ctx, "a@x", "not "+pw, s); err == nil {
			t.Error("wrong password opened Python's tokens")
		}
	})

	t.Run("Go encrypts, Python decrypts", func(t *testing.T) {
		s, err := fastCodec().Seal(ctx, "a@x", pw, Record{AccessToken: values["access_token"].(string),
			RefreshToken: values["refresh_token"].(string), ClientSecret: values["client_secret_encrypted"].(string)}, "")
		if err != nil {
			t.Fatal(err)
		}
		tokens := map[string]any{"access_token": s.AccessToken, "refresh_token": s.RefreshToken, "client_secret_encrypted": s.ClientSecretEncrypted}
		resp := python(t, map[string]any{"op": "decrypt", "password": pw, "salt": s.Salt, "iterations": s.Iterations, "tokens": tokens})
		got, _ := resp["values"].(map[string]any)
		for k, v := range values {
			if got[k] != v {
				t.Errorf("Python decrypted %s as %v (response %v)", k, got[k], resp)
			}
		}
		resp = python(t, map[string]any{"op": "decrypt", "password": "x", "salt": s.Salt, "iterations": s.Iterations, "tokens": tokens})
		if resp["error"] != "InvalidToken" {
			t.Errorf("Python opened Go's tokens with a wrong password: %v", resp)
		}
	})

	t.Run("cache file written by Python is read by Go", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cache")
		for acct, n := range map[string]int{"one@example.com": 2000, "two@example.com": 500} {
			python(t, map[string]any{"op": "writecache", "path": path, "account": acct, "password": pw + acct,
				"iterations": n, "omit_iterations": n == 500, "values": values, "expiry": 1900000000, "last_activity": 1800000000})
		}
		s := newTestStore(t, path, fastCodec())
		for _, acct := range []string{"one@example.com", "two@example.com"} {
			rec, err := s.Get(ctx, acct, pw+acct)
			if err != nil {
				t.Fatalf("%s: %v", acct, err)
			}
			if rec.RefreshToken != values["refresh_token"] || rec.AccessTokenExpiry.Unix() != 1900000000 || rec.LastActivity.Unix() != 1800000000 {
				t.Errorf("%s: %+v", acct, rec)
			}
		}
		// The legacy entry was rotated by Get, and Python reads the rotated
		// file without wanting to rotate again.
		resp := python(t, map[string]any{"op": "readcache", "path": path, "account": "two@example.com", "password": pw + "two@example.com", "counts": []int{2000, 500}})
		if resp["error"] != nil || resp["rotate"] != false || resp["iterations"] != float64(2000) {
			t.Errorf("Python reading Go's rotation: %v", resp)
		}
	})

	t.Run("cache file written by Go is read by Python", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cache")
		s := newTestStore(t, path, fastCodec())
		rec := Record{AccessToken: "go-at", RefreshToken: "go-rt", ClientSecret: "go-cs", AccessTokenExpiry: time.Unix(1900000001, 0), LastActivity: time.Unix(1800000001, 0)}
		for _, acct := range []string{"a@example.com", "b@example.com"} {
			if err := s.Put(ctx, acct, pw, rec); err != nil {
				t.Fatal(err)
			}
		}
		resp := python(t, map[string]any{"op": "readcache", "path": path, "account": "b@example.com", "password": pw, "counts": []int{2000, 500}})
		got, _ := resp["values"].(map[string]any)
		if got["access_token"] != "go-at" || got["refresh_token"] != "go-rt" || got["client_secret_encrypted"] != "go-cs" ||
			resp["rotate"] != false || resp["expiry"] != "1900000001" || resp["last_activity"] != "1800000001" {
			t.Errorf("Python read %v", resp)
		}
		// Python then rewrites the file (configparser, whole file) and Go
		// still reads every account.
		python(t, map[string]any{"op": "writecache", "path": path, "account": "c@example.com", "password": pw,
			"iterations": 2000, "values": values, "expiry": 1, "last_activity": 2})
		for _, acct := range []string{"a@example.com", "b@example.com", "c@example.com"} {
			if _, err := s.Get(ctx, acct, pw); err != nil {
				t.Errorf("%s after Python rewrote the file: %v", acct, err)
			}
		}
	})
}

// TestRealIterationCount runs the production path once: the zero Codec
// (1,200,000 iterations), one derivation for a Seal and the Open after it,
// and Python opening the result with the count it reads from the file.
func TestRealIterationCount(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the one test that pays a real 1,200,000-iteration derivation")
	}
	ctx := context.Background()
	keys := NewKeyCache(0)
	path := filepath.Join(t.TempDir(), "tokens.cache")
	s := NewFileStore(path, WithCodec(&Codec{Keys: keys}))
	if err := s.Put(ctx, "real@example.com", "pw", Record{RefreshToken: "rt"}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "real@example.com", "pw"); err != nil || got.RefreshToken != "rt" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if n := keys.Derivations(); n != 1 {
		t.Errorf("Put then Get paid %d derivations, want 1", n)
	}
	sum, _ := s.Summary("real@example.com")
	if sum.Iterations != 1_200_000 || !strings.Contains(mustRead(t, path), "token_iterations = 1200000\n") {
		t.Errorf("stored count %d", sum.Iterations)
	}
	t.Run("Python opens it", func(t *testing.T) {
		resp := python(t, map[string]any{"op": "readcache", "path": path, "account": "real@example.com", "password": "pw"})
		got, _ := resp["values"].(map[string]any)
		if got["refresh_token"] != "rt" || resp["rotate"] != false || resp["iterations"] != float64(1_200_000) {
			t.Errorf("Python at the real count: %v", resp)
		}
	})
}
