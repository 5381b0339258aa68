package oauth

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzTokenResponse: any bytes a token endpoint sends either fail to
// decode or give a response whose expiry is in the future and within
// MaxExpiresIn, never in the past (2^63-1 once overflowed there).
func FuzzTokenResponse(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"AT","token_type":"Bearer","expires_in":3599,"refresh_token":"RT"}`,
		`{"access_token":"AT","expires_in":"3599","ext_expires_in":"3599"}`,
		`{"access_token":"AT","expires_in":9223372036854775807}`,
		`{"access_token":"AT","expires_in":-1,"scope":["a"],"token_type":7}`,
		`{"access_token":"AT","expires_in":1e400}`,
		`{"access_token":"AT","expires_in":"soon"}`,
		`{"access_token":"AT","expires_in":null}`,
		`[]`, `null`, `{"access_token":5}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var tr TokenResponse
		if json.Unmarshal(data, &tr) != nil {
			return
		}
		exp := tr.Expiry(now)
		if !exp.After(now) || exp.Sub(now) > MaxExpiresIn {
			t.Fatalf("%s: expiry %v is outside (now, now+%v]", data, exp, MaxExpiresIn)
		}
		_ = tr.ExpiresInNote()
	})
}
