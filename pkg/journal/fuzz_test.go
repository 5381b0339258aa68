package journal

import (
	"testing"
	"unicode/utf8"
)

// FuzzParseEntry: any line journalctl (or whatever stands in for it on
// PATH) prints is either refused with an error or read into an entry
// whose fields are valid, without a panic.
func FuzzParseEntry(f *testing.F) {
	for _, s := range []string{
		`{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000000000","MESSAGE":"Please visit the following URL to authenticate account a@b: https://x/?a=1","MESSAGE_ID":"0123456789abcdef0123456789abcdef","PRIORITY":"6","_PID":"42","_SYSTEMD_UNIT":"orbit-email-oauth2-proxy.service","SYSLOG_IDENTIFIER":"orbit"}`,
		`{"MESSAGE":[104,105,255],"X":null,"Y":["a","b"],"Z":[[1,2],"c",null]}`,
		`{"PRIORITY":"99","_PID":"x","__REALTIME_TIMESTAMP":"-1"}`,
		`{"MESSAGE":{"nested":true}}`,
		`[]`, `null`, `{`, `{"MESSAGE":[300,-1]}`, "{\"MESSAGE\":\"\\ud800\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseEntry(line)
		if err != nil {
			return
		}
		if e.Priority < -1 || e.Priority > 7 {
			t.Fatalf("priority %d out of range", e.Priority)
		}
		if e.Fields == nil {
			t.Fatal("nil fields for a parsed entry")
		}
		for name, v := range e.Fields {
			if !utf8.ValidString(name) {
				t.Fatalf("field name %q is not UTF-8", name)
			}
			if e.Field(name) != v {
				t.Fatalf("Field(%q) disagrees", name)
			}
		}
	})
}
