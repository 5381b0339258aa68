package config

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scaleConfig is a realistic file with n accounts behind one IMAP and one
// SMTP server, every account with its own client settings and tokens, as an
// appliance serving many mailboxes writes it.
func scaleConfig(n int) []byte {
	var b strings.Builder
	b.WriteString("[emailproxy]\nallow_catch_all_accounts = False\n\n")
	b.WriteString("[IMAP-2993]\nserver_address = outlook.office365.com\nserver_port = 993\nlocal_address = 127.0.0.1\n\n")
	b.WriteString("[SMTP-2465]\nserver_address = smtp.office365.com\nserver_port = 587\nserver_starttls = True\nlocal_address = 127.0.0.1\n\n")
	for i := range n {
		fmt.Fprintf(&b, `[user%d@example.com]
permission_url = https://login.microsoftonline.com/common/oauth2/v2.0/authorize
token_url = https://login.microsoftonline.com/common/oauth2/v2.0/token
oauth2_scope = https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access
redirect_uri = http://localhost
client_id = 00000000-0000-0000-0000-%012d
client_secret = secret-%d
token_salt = c2FsdA==
token_iterations = 1200000
access_token = gAAAAABtoken%d
access_token_expiry = 1760000000
refresh_token = gAAAAABrefresh%d
last_activity = 1760000000

`, i, i, i, i, i)
	}
	return []byte(b.String())
}

// loadAndValidate is what `config validate` and `serve` start do with the
// file: parse it, validate it, and resolve every account.
func loadAndValidate(tb testing.TB, data []byte) {
	c, err := Parse(data, "scale.config")
	if err != nil {
		tb.Fatal(err)
	}
	if ds := c.Validate(); HasErrors(ds) {
		tb.Fatalf("diagnostics: %v", ds[0])
	}
	for _, name := range c.AccountSections() {
		if _, ok := c.Account(name); !ok {
			tb.Fatalf("account %s not found", name)
		}
	}
}

// cpuTime is the CPU time this process has used: on a shared machine wall
// time measures the neighbours as much as the code.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConfigScale loads and validates files of 2,000 and 20,000
// accounts, as `config validate` and `serve` start do (parse, Validate,
// resolve every account). Target (issue 11): well under a second for
// 20,000 accounts, and linear: the 20,000 run reports linearity, its cost
// per account (CPU time) over the 2,000 run's (1.0 is linear; the quadratic scan
// this replaced gave about 17).
func BenchmarkConfigScale(b *testing.B) {
	var perAccount2k float64
	for _, n := range []int{2000, 20000} {
		data := scaleConfig(n)
		b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) {
			start, cpu0 := time.Now(), cpuTime()
			for b.Loop() {
				loadAndValidate(b, data)
			}
			per := time.Since(start) / time.Duration(b.N)
			cpu := (cpuTime() - cpu0) / time.Duration(b.N)
			perAccount := float64(cpu.Nanoseconds()) / 1e3 / float64(n)
			b.ReportMetric(per.Seconds(), "s/load")
			b.ReportMetric(cpu.Seconds(), "cpu-s/load")
			b.ReportMetric(perAccount, "cpu-us/account")
			if n == 2000 {
				perAccount2k = perAccount
			} else if perAccount2k > 0 {
				b.ReportMetric(perAccount/perAccount2k, "linearity")
			}
		})
	}
}
