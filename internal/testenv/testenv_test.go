package testenv

import (
	"context"
	"crypto/tls"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestTLSFilesServeAndVerify(t *testing.T) {
	f := NewTLS(t)
	for _, p := range []string{f.CAFile, f.CertFile, f.KeyFile} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := os.Stat(f.KeyFile); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
	cfg, err := f.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls ok") }))
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refusals below are expected
	srv.StartTLS()
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	t.Run("Go client, each name", func(t *testing.T) {
		for _, host := range []string{"127.0.0.1", "localhost"} {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: f.ClientConfig()}}
			resp, err := c.Get(fmt.Sprintf("https://%s:%d/", host, port))
			if err != nil {
				t.Fatalf("%s: %v", host, err)
			}
			resp.Body.Close()
		}
	})
	t.Run("wrong name is refused", func(t *testing.T) {
		cfg := f.ClientConfig()
		cfg.ServerName = "mail.example.com"
		conn, err := tls.Dial("tcp", Addr(port), cfg)
		if err == nil {
			conn.Close()
			t.Fatal("a certificate for 127.0.0.1/localhost verified as mail.example.com")
		}
	})
	t.Run("curl --cacert", func(t *testing.T) {
		RequireCommand(t, "curl")
		out, err := exec.Command("curl", "--silent", "--show-error", "--cacert", f.CAFile, fmt.Sprintf("https://127.0.0.1:%d/", port)).CombinedOutput()
		if err != nil || string(out) != "tls ok" {
			t.Fatalf("curl: %v %s", err, out)
		}
	})
	t.Run("python trusts it through SSL_CERT_FILE only", func(t *testing.T) {
		py := RequireCommand(t, "python3")
		script := fmt.Sprintf(`import ssl, urllib.request
print(urllib.request.urlopen("https://127.0.0.1:%d/", context=ssl.create_default_context()).read().decode())`, port)
		with := exec.Command(py, "-c", script)
		with.Env = append(os.Environ(), f.Env())
		if out, err := with.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "tls ok" {
			t.Fatalf("with %s: %v %s", f.Env(), err, out)
		}
		without := exec.Command(py, "-c", script)
		without.Env = append(os.Environ(), "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")
		if out, err := without.CombinedOutput(); err == nil {
			t.Fatalf("the system store trusted the throwaway CA: %s", out)
		}
	})
}

func TestWriteTLSCustomHosts(t *testing.T) {
	f, err := WriteTLS(filepath.Join(t.TempDir(), "x"), "mx.example.test", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	leaf := cfg.Certificates[0]
	if len(leaf.Certificate) != 2 {
		t.Errorf("server.crt holds %d certificates, want leaf and CA", len(leaf.Certificate))
	}
	if err := cfg.Certificates[0].Leaf.VerifyHostname("mx.example.test"); err != nil {
		t.Error(err)
	}
	if err := cfg.Certificates[0].Leaf.VerifyHostname("10.0.0.1"); err != nil {
		t.Error(err)
	}
}

func TestFreePortsAndWait(t *testing.T) {
	ports := FreePorts(t, 20)
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p == 0 {
			t.Fatalf("duplicate or zero port in %v", ports)
		}
		seen[p] = true
	}
	addr := Addr(ports[0])
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := WaitPort(short, addr); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("WaitPort on a closed port: %v", err)
	}
	if err := WaitPortClosed(context.Background(), addr); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, err)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := WaitPort(ctx, addr); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := WaitPortClosed(ctx, addr); err != nil {
		t.Fatal(err)
	}
}

func TestSharedDir(t *testing.T) {
	var dir string
	t.Run("inner", func(t *testing.T) {
		dir = SharedDir(t)
		st, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o755 {
			t.Errorf("mode %v, want 0755", st.Mode().Perm())
		}
		if os.Geteuid() == 0 && !strings.HasPrefix(dir, SharedRoot+"/") {
			t.Errorf("as root, %s is not under %s", dir, SharedRoot)
		}
		if strings.HasPrefix(dir, "/tmp/") || strings.HasPrefix(dir, "/var/tmp/") {
			if os.Geteuid() == 0 {
				t.Errorf("%s is hidden from the systemd sandbox", dir)
			}
		}
		// Every parent must be traversable by Dovecot's unprivileged users.
		for p := filepath.Dir(dir); p != "/"; p = filepath.Dir(p) {
			if st, err := os.Stat(p); err != nil || st.Mode().Perm()&0o001 == 0 {
				t.Errorf("parent %s is not traversable (%v)", p, err)
			}
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s survived its test: %v", dir, err)
	}
}

func TestBuildOrbit(t *testing.T) {
	RequireCommand(t, "go")
	bin := BuildOrbit(t)
	if again := BuildOrbit(t); again != bin {
		t.Fatalf("second BuildOrbit gave %s, first %s: not cached", again, bin)
	}
	if strings.HasPrefix(bin, "/tmp/") && os.Geteuid() == 0 {
		t.Errorf("%s is under /tmp, invisible inside the systemd sandbox", bin)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("orbit is dynamically linked; the sandbox and other hosts want a static binary")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput(); err != nil {
		t.Fatalf("orbit --help: %v\n%s", err, out)
	}
}
