package tokens

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Fernet, written from the published format so that values sealed here open
// in the Python proxy (python cryptography's Fernet) and the other way round:
//
//	token = urlsafe-base64( 0x80 | time (8, big endian) | IV (16) | AES-128-CBC(PKCS7(msg)) | HMAC-SHA256 (32) )
//
// The HMAC covers everything before it and is keyed with the first half of
// the 32-byte Fernet key; the second half is the AES key. The TTL is never
// checked: the Python proxy does not check it either, and a stored refresh
// token is meant to outlive any TTL we could pick.

const (
	fernetVersion  = 0x80
	fernetHeader   = 1 + 8 + aes.BlockSize // version, timestamp, IV
	fernetMAC      = sha256.Size
	fernetMinBytes = fernetHeader + aes.BlockSize + fernetMAC
)

var (
	// ErrMalformedToken: the value is not a Fernet token at all (bad base64,
	// wrong version byte, wrong length, bad padding). No key can open it.
	ErrMalformedToken = errors.New("malformed Fernet token")
	// ErrWrongKey: a well-formed Fernet token whose HMAC does not match the
	// key, i.e. it was sealed with another key (another password, salt or
	// iteration count) or altered since.
	ErrWrongKey = errors.New("token was not sealed with this key (Fernet HMAC mismatch)")
)

// FernetKey is a 32-byte Fernet key: signing key then AES-128 key. It is
// deliberately not a string so that it cannot end up in a log line by
// accident; String hides it.
type FernetKey [32]byte

func (k FernetKey) signingKey() []byte { return k[:16] }
func (k FernetKey) cipherKey() []byte  { return k[16:] }

// String never shows the key material.
func (FernetKey) String() string { return "FernetKey(redacted)" }

// GoString keeps %#v from printing the bytes too.
func (k FernetKey) GoString() string { return k.String() }

// Encoded is the key as Python's Fernet() constructor takes it: urlsafe
// base64, padded. Only for interoperability and tests; it is a secret.
func (k FernetKey) Encoded() string { return base64.URLEncoding.EncodeToString(k[:]) }

// ParseFernetKey reads a key in the Encoded form (padding optional).
func ParseFernetKey(s string) (FernetKey, error) {
	var k FernetKey
	raw, err := decodeURLBase64(strings.TrimSpace(s))
	if err != nil || len(raw) != len(k) {
		return k, errors.New("a Fernet key must be 32 bytes in urlsafe base64")
	}
	copy(k[:], raw)
	return k, nil
}

// FernetEncrypt seals plaintext under key, stamped with the current time.
func FernetEncrypt(key FernetKey, plaintext []byte) (string, error) {
	var iv [aes.BlockSize]byte
	if _, err := rand.Read(iv[:]); err != nil {
		return "", fmt.Errorf("reading random IV: %w", err)
	}
	return fernetEncryptAt(key, plaintext, time.Now(), iv), nil
}

func fernetEncryptAt(key FernetKey, plaintext []byte, at time.Time, iv [aes.BlockSize]byte) string {
	block, err := aes.NewCipher(key.cipherKey())
	if err != nil {
		// A 16-byte key is always valid for AES-128.
		panic("tokens: AES-128 rejected a 16-byte key: " + err.Error())
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	body := make([]byte, fernetHeader, fernetHeader+len(plaintext)+pad+fernetMAC)
	body[0] = fernetVersion
	binary.BigEndian.PutUint64(body[1:9], uint64(at.Unix()))
	copy(body[9:fernetHeader], iv[:])
	body = append(body, plaintext...)
	body = append(body, bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(body[fernetHeader:], body[fernetHeader:])
	mac := hmac.New(sha256.New, key.signingKey())
	mac.Write(body)
	body = mac.Sum(body)
	return base64.URLEncoding.EncodeToString(body)
}

// FernetDecrypt opens a token sealed under key. It returns ErrMalformedToken
// when the input is not a Fernet token and ErrWrongKey when the HMAC does not
// match. The HMAC is checked (in constant time) before anything is
// decrypted, so the padding check cannot serve as an oracle.
func FernetDecrypt(key FernetKey, token string) ([]byte, error) {
	raw, err := decodeURLBase64(strings.TrimSpace(token))
	if err != nil {
		return nil, fmt.Errorf("%w: not urlsafe base64", ErrMalformedToken)
	}
	if len(raw) < fernetMinBytes {
		return nil, fmt.Errorf("%w: %d bytes, at least %d expected", ErrMalformedToken, len(raw), fernetMinBytes)
	}
	if raw[0] != fernetVersion {
		return nil, fmt.Errorf("%w: version byte 0x%02x, expected 0x80", ErrMalformedToken, raw[0])
	}
	signed, sum := raw[:len(raw)-fernetMAC], raw[len(raw)-fernetMAC:]
	ct := signed[fernetHeader:]
	if len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: ciphertext is not a whole number of AES blocks", ErrMalformedToken)
	}
	mac := hmac.New(sha256.New, key.signingKey())
	mac.Write(signed)
	if !hmac.Equal(mac.Sum(nil), sum) {
		return nil, ErrWrongKey
	}
	block, err := aes.NewCipher(key.cipherKey())
	if err != nil {
		panic("tokens: AES-128 rejected a 16-byte key: " + err.Error())
	}
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, signed[9:fernetHeader]).CryptBlocks(out, ct)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, fmt.Errorf("%w: bad PKCS7 padding", ErrMalformedToken)
	}
	for _, b := range out[len(out)-pad:] {
		if int(b) != pad {
			return nil, fmt.Errorf("%w: bad PKCS7 padding", ErrMalformedToken)
		}
	}
	return out[:len(out)-pad], nil
}

// decodeURLBase64 accepts padded and unpadded urlsafe base64; Python writes
// padded values, hand-copied ones sometimes lose the '='.
func decodeURLBase64(s string) ([]byte, error) {
	if raw, err := base64.URLEncoding.DecodeString(s); err == nil {
		return raw, nil
	}
	return base64.RawURLEncoding.DecodeString(s)
}
