package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func testKey(t testing.TB, b byte) FernetKey {
	t.Helper()
	var k FernetKey
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func TestFernetRoundTrip(t *testing.T) {
	k := testKey(t, 1)
	for _, msg := range []string{"", "a", strings.Repeat("x", 15), strings.Repeat("y", 16), strings.Repeat("z", 17),
		"ünïcødé ✓ token", strings.Repeat("eyJ0eXAiOiJKV1Qi", 200)} {
		tok, err := FernetEncrypt(k, []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(tok, "gAAAAA") {
			t.Errorf("token %q does not start like a Fernet token", tok[:10])
		}
		got, err := FernetDecrypt(k, tok)
		if err != nil {
			t.Fatalf("decrypt %d-byte message: %v", len(msg), err)
		}
		if string(got) != msg {
			t.Errorf("round trip of %d bytes gave %q", len(msg), got)
		}
		// Fresh IVs: the same message never seals the same way twice.
		tok2, _ := FernetEncrypt(k, []byte(msg))
		if tok2 == tok {
			t.Errorf("two encryptions of %q are identical", msg)
		}
	}
}

func TestFernetTimestampAndLayout(t *testing.T) {
	k := testKey(t, 7)
	at := time.Unix(499162800, 0)
	var iv [16]byte
	for i := range iv {
		iv[i] = byte(i)
	}
	tok := fernetEncryptAt(k, []byte("hello"), at, iv)
	raw, err := base64.URLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal("token is not padded urlsafe base64:", err)
	}
	if raw[0] != 0x80 || binary.BigEndian.Uint64(raw[1:9]) != uint64(at.Unix()) || string(raw[9:25]) != string(iv[:]) {
		t.Errorf("header is %x, want 80 | %016x | %x", raw[:25], at.Unix(), iv)
	}
	if len(raw) != 1+8+16+16+32 {
		t.Errorf("5-byte message gave %d bytes, want one AES block plus header and MAC", len(raw))
	}
	// TTL is not checked: a token stamped 1985 opens today.
	if got, err := FernetDecrypt(k, tok); err != nil || string(got) != "hello" {
		t.Errorf("old token: %q, %v", got, err)
	}
}

// sign builds a token from arbitrary parts with a valid HMAC, to reach the
// checks that come after the signature.
func sign(k FernetKey, ct []byte, iv []byte) string {
	body := append([]byte{0x80, 0, 0, 0, 0, 0, 0, 0, 1}, iv...)
	body = append(body, ct...)
	m := hmac.New(sha256.New, k.signingKey())
	m.Write(body)
	return base64.URLEncoding.EncodeToString(m.Sum(body))
}

func TestFernetRejects(t *testing.T) {
	k := testKey(t, 3)
	good, _ := FernetEncrypt(k, []byte("refresh-token"))
	raw, _ := base64.URLEncoding.DecodeString(good)
	mutate := func(f func([]byte)) string {
		b := append([]byte(nil), raw...)
		f(b)
		return base64.URLEncoding.EncodeToString(b)
	}
	iv := make([]byte, 16)
	block, _ := aes.NewCipher(k.cipherKey())
	badPad := make([]byte, 16)
	copy(badPad, "0123456789abcde\x00") // pad byte 0 is never valid
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(badPad, badPad)
	badPad2 := make([]byte, 16)
	copy(badPad2, "0123456789abc\x01\x03\x03") // claims 3, one byte differs
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(badPad2, badPad2)

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrMalformedToken},
		{"not base64", "gAAAAA!!!not-base64***", ErrMalformedToken},
		{"too short", base64.URLEncoding.EncodeToString(raw[:40]), ErrMalformedToken},
		{"wrong version", mutate(func(b []byte) { b[0] = 0x81 }), ErrMalformedToken},
		{"ciphertext not whole blocks", base64.URLEncoding.EncodeToString(append(append([]byte(nil), raw[:len(raw)-32]...), append([]byte{1, 2, 3}, raw[len(raw)-32:]...)...)), ErrMalformedToken},
		{"flipped ciphertext bit", mutate(func(b []byte) { b[30] ^= 1 }), ErrWrongKey},
		{"flipped MAC bit", mutate(func(b []byte) { b[len(b)-1] ^= 1 }), ErrWrongKey},
		{"flipped timestamp", mutate(func(b []byte) { b[3] ^= 1 }), ErrWrongKey},
		{"signed but padding byte 0", sign(k, badPad, iv), ErrMalformedToken},
		{"signed but inconsistent padding", sign(k, badPad2, iv), ErrMalformedToken},
		{"other key", func() string { s, _ := FernetEncrypt(testKey(t, 9), []byte("x")); return s }(), ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FernetDecrypt(k, tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("FernetDecrypt = %q, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestFernetAcceptsUnpaddedAndWhitespace(t *testing.T) {
	k := testKey(t, 5)
	tok, _ := FernetEncrypt(k, []byte("abc"))
	for _, v := range []string{strings.TrimRight(tok, "="), " " + tok + "\n"} {
		if got, err := FernetDecrypt(k, v); err != nil || string(got) != "abc" {
			t.Errorf("FernetDecrypt(%q) = %q, %v", v, got, err)
		}
	}
}

func TestFernetKeyNeverPrinted(t *testing.T) {
	k := testKey(t, 0x41) // printable bytes, so a leak would be visible
	enc := k.Encoded()
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %s %+v %#v", k, k, k, k), fmt.Sprintf("%v", []FernetKey{k})} {
		if strings.Contains(s, enc) || strings.Contains(s, "ABCD") || strings.Contains(s, "65") {
			t.Errorf("formatted key leaks material: %s", s)
		}
	}
	back, err := ParseFernetKey(enc)
	if err != nil || back != k {
		t.Errorf("ParseFernetKey(Encoded()) = %v, %v", back == k, err)
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", 60)} {
		if _, err := ParseFernetKey(bad); err == nil {
			t.Errorf("ParseFernetKey(%q) accepted", bad)
		}
	}
}

// FuzzFernetDecrypt: whatever the input, decryption returns a value or one
// of the two documented errors, and never panics. A value that decrypts
// must re-encrypt and decrypt to the same plaintext.
func FuzzFernetDecrypt(f *testing.F) {
	k := testKey(f, 11)
	good, _ := FernetEncrypt(k, []byte("seed plaintext"))
	f.Add(good)
	f.Add(strings.TrimRight(good, "="))
	f.Add("")
	f.Add("gAAAAA")
	f.Add(good[:len(good)-8])
	f.Add(sign(k, make([]byte, 16), make([]byte, 16)))
	f.Add(sign(k, nil, make([]byte, 16)))
	f.Fuzz(func(t *testing.T, token string) {
		pt, err := FernetDecrypt(k, token)
		if err != nil {
			if !errors.Is(err, ErrMalformedToken) && !errors.Is(err, ErrWrongKey) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		again, err := FernetEncrypt(k, pt)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := FernetDecrypt(k, again); err != nil || string(back) != string(pt) {
			t.Fatalf("re-encrypted value did not round-trip: %v", err)
		}
	})
}

// FuzzFernetDecryptSigned reaches past the MAC check: the fuzzer picks the
// ciphertext and IV and the harness signs them, so padding and block
// handling see arbitrary bytes.
func FuzzFernetDecryptSigned(f *testing.F) {
	k := testKey(f, 13)
	f.Add(make([]byte, 16), make([]byte, 16))
	f.Add(make([]byte, 32), []byte("0123456789abcdef"))
	f.Add([]byte{1}, []byte{2})
	f.Fuzz(func(t *testing.T, ct, iv []byte) {
		if len(iv) != 16 {
			iv = append(append([]byte(nil), iv...), make([]byte, 16)...)[:16]
		}
		_, err := FernetDecrypt(k, sign(k, ct, iv))
		if err != nil && !errors.Is(err, ErrMalformedToken) {
			t.Fatalf("signed token gave %v, want nil or ErrMalformedToken", err)
		}
	})
}
