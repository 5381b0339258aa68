package interactive

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRedirectQuery: whatever path and query reach the redirect listener
// (it listens where browsers, and anyone else who can connect, reach it),
// the answer is a page with a sane status, never a panic, and nothing the
// request carried comes back as markup.
func FuzzRedirectQuery(f *testing.F) {
	for _, seed := range [][2]string{
		{"/email-oauth2-proxy-authorize/", "code=abc&state=xyz"},
		{"/email-oauth2-proxy-authorize/", "state=xyz&error=access_denied&error_description=AADSTS65004%3A+User+declined"},
		{"/email-oauth2-proxy-authorize", "state=&code="},
		{"/other", "state=1"},
		{"/email-oauth2-proxy-authorize/", "state=%3Cscript%3Ealert(1)%3C/script%3E&error=%3Cb%3E&error_description=%22%3E%3Cimg"},
		{"/email-oauth2-proxy-authorize/", "state=a;b&&&==&%zz"},
		{"//email-oauth2-proxy-authorize/../x", strings.Repeat("state=x&", 50)},
	} {
		f.Add(seed[0], seed[1])
	}
	s := New(Options{Logger: slog.New(slog.DiscardHandler)})
	l := &listener{addr: "127.0.0.1:0", paths: map[string]bool{normalPath("/email-oauth2-proxy-authorize/"): true}}
	f.Fuzz(func(t *testing.T, path, rawQuery string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		req.URL.Path, req.URL.RawQuery = path, rawQuery
		rec := httptest.NewRecorder()
		s.serveRedirect(rec, req, l)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusGone, http.StatusForbidden, http.StatusConflict:
		default:
			if rec.Code >= 500 {
				t.Fatalf("status %d for %q?%q", rec.Code, path, rawQuery)
			}
		}
		// A value with markup in it must not come back as it was. Short
		// values are left out: the page's own markup holds a lone quote
		// or "<p" (the first crasher, kept in testdata, was a lone quote).
		body := rec.Body.String()
		for _, v := range req.URL.Query() {
			for _, x := range v {
				if len(x) >= 12 && strings.ContainsAny(x, "<>") && strings.Contains(body, x) {
					t.Fatalf("the page echoes %q unescaped", x)
				}
			}
		}
	})
}
