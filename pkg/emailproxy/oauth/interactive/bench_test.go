package interactive

import (
	"context"
	"io"
	"net/http"
	"testing"
)

type urlChan chan string

func (c urlChan) SetPending(_, u string)          { c <- u }
func (c urlChan) SetPendingDevice(_, u, _ string) { c <- u }

// BenchmarkAuthorizationRoundTrip measures one whole authorisation over
// loopback HTTP: Authorize announces, the "browser" opens the URL at the
// provider and follows the redirect to the listener, the listener exchanges
// the code, and the waiting Authorize returns. The listener is started once
// and shared, as in the engine.
func BenchmarkAuthorizationRoundTrip(b *testing.B) {
	p := newProvider(b)
	urls := make(urlChan, 1)
	s := New(Options{Reporter: urls, Logger: newSlog(newLogs())})
	b.Cleanup(func() { s.Shutdown(context.Background()) })
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(b)+redirectPath)
	client := &http.Client{}
	for b.Loop() {
		ch := make(chan error, 1)
		go func() {
			_, err := s.Authorize(context.Background(), acct, "")
			ch <- err
		}()
		resp, err := client.Get(<-urls)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		if err := <-ch; err != nil {
			b.Fatal(err)
		}
	}
}
