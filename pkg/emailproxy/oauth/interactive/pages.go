package interactive

import (
	"bytes"
	"html/template"
	"net/http"
	"strconv"
)

// page is what the browser is told after a redirect. Every field is
// escaped by html/template, so nothing a request carries (error codes and
// descriptions come from the query string) can inject markup.
type page struct {
	Failed   bool
	Heading  string
	Account  string
	What     string
	Provider string // the provider's error, shown verbatim (escaped)
	Todo     string
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Heading}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;line-height:1.5;color:#222}
h1{font-size:1.4em;color:{{if .Failed}}#a40000{{else}}#1a6b1a{{end}}}
code,.provider{font-family:ui-monospace,monospace;background:#f3f3f3;padding:.1em .3em}
</style>
</head>
<body>
<h1>{{.Heading}}</h1>
{{if .Account}}<p>Account: <strong>{{.Account}}</strong></p>{{end}}
{{if .What}}<p>{{.What}}</p>{{end}}
{{if .Provider}}<p class="provider">{{.Provider}}</p>{{end}}
{{if .Todo}}<p><strong>What to do:</strong> {{.Todo}}</p>{{end}}
<p><small>Email OAuth 2.0 Proxy (orbit)</small></p>
</body>
</html>
`))

func writePage(w http.ResponseWriter, status int, p page) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, p); err != nil {
		http.Error(w, p.Heading, status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	// The URL holds a single-use code: no caching, no referrer, no framing,
	// and no scripts or loads from anywhere.
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
