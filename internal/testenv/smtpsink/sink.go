// Package smtpsink is an SMTP server on loopback that accepts every message
// without authentication, keeps a copy in memory for asserts, and hands each
// recipient's copy to a delivery function (the dovecot package's writes it
// into the recipient's Maildir, so mail sent through Dovecot's submission
// service can be read back over IMAP and POP3).
package smtpsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	// Data is the message exactly as received after SMTP dot-unstuffing,
	// CRLF line endings included.
	Data []byte
	At   time.Time
}

// DeliverFunc stores one recipient's copy; an error makes the sink answer
// the DATA command with a temporary failure (451).
type DeliverFunc func(rcpt string, data []byte) error

// MaxMessageBytes bounds one message (the SIZE the sink advertises).
const MaxMessageBytes = 32 << 20

// Sink is a running SMTP sink.
type Sink struct {
	srv *smtp.Server
	l   net.Listener

	mu      sync.Mutex
	deliver DeliverFunc
	msgs    []Message
	changed chan struct{} // closed and replaced whenever msgs grows
	errs    []error
}

// New starts a sink on a free port of 127.0.0.1; deliver may be nil.
func New(deliver DeliverFunc) (*Sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("SMTP sink: listening on 127.0.0.1: %w", err)
	}
	s := &Sink{l: l, deliver: deliver, changed: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{sink: s}, nil
	}))
	s.srv.Domain = "sink.example.test"
	s.srv.MaxMessageBytes = MaxMessageBytes
	s.srv.MaxRecipients = 100
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.ErrorLog = discardLogger{}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// Start is New for a test: it fails t on error and closes the sink when t
// ends.
func Start(t testing.TB, deliver DeliverFunc) *Sink {
	t.Helper()
	s, err := New(deliver)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Close stops the sink.
func (s *Sink) Close() error { return s.srv.Close() }

// Addr is 127.0.0.1:PORT.
func (s *Sink) Addr() string { return s.l.Addr().String() }

// Port is the port the sink listens on.
func (s *Sink) Port() int { return s.l.Addr().(*net.TCPAddr).Port }

// SetDeliver replaces the delivery function.
func (s *Sink) SetDeliver(d DeliverFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliver = d
}

// Messages returns a copy of every accepted message, in arrival order.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneMessages(s.msgs)
}

// DeliveryErrors returns the errors the delivery function returned.
func (s *Sink) DeliveryErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

// Wait returns the messages once at least n have arrived, or an error when
// ctx ends first.
func (s *Sink) Wait(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			out := cloneMessages(s.msgs)
			s.mu.Unlock()
			return out, nil
		}
		have, ch := len(s.msgs), s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("SMTP sink %s: waiting for %d messages, have %d: %w", s.Addr(), n, have, ctx.Err())
		}
	}
}

func cloneMessages(in []Message) []Message {
	out := make([]Message, len(in))
	for i, m := range in {
		out[i] = Message{From: m.From, To: slices.Clone(m.To), Data: bytes.Clone(m.Data), At: m.At}
	}
	return out
}

type session struct {
	sink *Sink
	from string
	to   []string
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	sk := s.sink
	sk.mu.Lock()
	deliver := sk.deliver
	sk.mu.Unlock()
	if deliver != nil {
		var errs []error
		for _, rcpt := range s.to {
			if err := deliver(rcpt, data); err != nil {
				errs = append(errs, fmt.Errorf("delivering to %s: %w", rcpt, err))
			}
		}
		if err := errors.Join(errs...); err != nil {
			sk.mu.Lock()
			sk.errs = append(sk.errs, err)
			sk.mu.Unlock()
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink delivery failed: " + strconv.Quote(err.Error())}
		}
	}
	sk.mu.Lock()
	sk.msgs = append(sk.msgs, Message{From: s.from, To: slices.Clone(s.to), Data: data, At: time.Now()})
	close(sk.changed)
	sk.changed = make(chan struct{})
	sk.mu.Unlock()
	return nil
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}

// WithoutTrace returns data without the Received: header fields that
// relays prepend (Dovecot's submission service adds one), so a test can
// compare what a client submitted with what the sink got, byte for byte.
func WithoutTrace(data []byte) []byte {
	rest := data
	for bytes.HasPrefix(rest, []byte("Received:")) || bytes.HasPrefix(rest, []byte("received:")) {
		// Skip the field and its folded continuation lines.
		for {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				return nil
			}
			rest = rest[i+1:]
			if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
				break
			}
		}
	}
	return rest
}
