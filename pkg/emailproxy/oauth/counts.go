package oauth

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Token request results, a fixed set for metrics labels.
const (
	RequestOK          = "ok"
	RequestRefused     = "refused"     // an OAuth error answer (4xx)
	RequestUnavailable = "unavailable" // network, 5xx, not JSON
)

// knownGrants bounds the grant label: anything else counts as "other".
var knownGrants = map[string]bool{
	"authorization_code": true, "refresh_token": true, "client_credentials": true, "password": true,
	"urn:ietf:params:oauth:grant-type:device_code":    true,
	"urn:ietf:params:oauth:grant-type:jwt-bearer":     true,
	"urn:ietf:params:oauth:grant-type:token-exchange": true,
}

// TokenRequestCount is how many token requests of one grant type ended
// with one result in this process.
type TokenRequestCount struct {
	Grant  string
	Result string
	N      uint64
}

var tokenRequests sync.Map // grant + "\x00" + result -> *atomic.Uint64

func countTokenRequest(grant string, err error) {
	if !knownGrants[grant] {
		grant = "other"
	}
	result := RequestOK
	switch {
	case err == nil:
	case errors.Is(err, ErrProviderRefused):
		result = RequestRefused
	default:
		result = RequestUnavailable
	}
	v, _ := tokenRequests.LoadOrStore(grant+"\x00"+result, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// TokenRequestCounts lists the token requests this process sent (every
// flow, interactive exchanges and device polls included), for metrics.
func TokenRequestCounts() []TokenRequestCount {
	var out []TokenRequestCount
	tokenRequests.Range(func(k, v any) bool {
		grant, result, _ := strings.Cut(k.(string), "\x00")
		out = append(out, TokenRequestCount{Grant: grant, Result: result, N: v.(*atomic.Uint64).Load()})
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Grant != out[j].Grant {
			return out[i].Grant < out[j].Grant
		}
		return out[i].Result < out[j].Result
	})
	return out
}
