package smtpsink

import (
	"bytes"
	"context"
	"errors"
	"net/smtp"
	"strings"
	"testing"
	"time"
)

func TestSinkKeepsAndDeliversMessages(t *testing.T) {
	delivered := map[string][]byte{}
	s := Start(t, func(rcpt string, data []byte) error {
		if strings.HasPrefix(rcpt, "broken@") {
			return errors.New("mailbox full")
		}
		delivered[rcpt] = data
		return nil
	})
	msg := "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nline one\r\n.dot line\r\n"
	tests := []struct {
		name    string
		to      []string
		wantErr bool
	}{
		{"two recipients", []string{"bob@example.test", "carol@example.test"}, false},
		{"delivery fails", []string{"broken@example.test"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := smtp.SendMail(s.Addr(), nil, "alice@example.test", tt.to, []byte(msg))
			if (err != nil) != tt.wantErr {
				t.Fatalf("SendMail: %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !strings.Contains(err.Error(), "451") {
				t.Fatalf("error %v is not the 451 temporary failure", err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := s.Wait(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("kept %d messages, want 1 (the failed delivery is not kept)", len(msgs))
	}
	m := msgs[0]
	if m.From != "alice@example.test" || len(m.To) != 2 {
		t.Fatalf("envelope %q -> %v", m.From, m.To)
	}
	if !bytes.Equal(m.Data, []byte(msg)) {
		t.Fatalf("data differs from what was sent:\n got %q\nwant %q", m.Data, msg)
	}
	for _, rcpt := range []string{"bob@example.test", "carol@example.test"} {
		if !bytes.Equal(delivered[rcpt], []byte(msg)) {
			t.Errorf("%s got %q", rcpt, delivered[rcpt])
		}
	}
	if errs := s.DeliveryErrors(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "mailbox full") {
		t.Errorf("DeliveryErrors = %v", errs)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := s.Wait(short, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait for a message that never comes: %v", err)
	}
}

func TestWithoutTrace(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"one folded Received", "Received: from a\r\n\tby b\r\n\tid c\r\nFrom: x\r\n\r\nbody\r\n", "From: x\r\n\r\nbody\r\n"},
		{"two Received", "Received: from a\r\nReceived: from b\r\n by c\r\nSubject: s\r\n\r\nb\r\n", "Subject: s\r\n\r\nb\r\n"},
		{"none", "From: x\r\n\r\nReceived: in the body stays\r\n", "From: x\r\n\r\nReceived: in the body stays\r\n"},
		{"Received later in the header stays", "From: x\r\nReceived: y\r\n\r\n", "From: x\r\nReceived: y\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(WithoutTrace([]byte(tt.in))); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
