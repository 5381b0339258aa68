package remote

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
)

// ReadHostsFile reads a --hosts-file: one address per line; blank lines
// and everything from a # on are ignored.
func ReadHostsFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		code := exitcode.Usage
		if errors.Is(err, fs.ErrPermission) {
			code = exitcode.Permission
		}
		return nil, exitcode.Withf(code, "--hosts-file: %w", err)
	}
	var hosts []string
	for n, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		switch len(f) {
		case 0:
			continue
		case 1:
		default:
			return nil, exitcode.Withf(exitcode.Usage, "--hosts-file %s:%d: %q holds more than one address; put one per line", path, n+1, strings.TrimSpace(line))
		}
		if _, err := ParseAddress(f[0]); err != nil {
			return nil, exitcode.Withf(exitcode.Usage, "--hosts-file %s:%d: %w", path, n+1, err)
		}
		hosts = append(hosts, f[0])
	}
	if len(hosts) == 0 {
		return nil, exitcode.Withf(exitcode.Usage, "--hosts-file %s names no host: put one address per line ([USER@]HOST[:PORT]; # starts a comment)", path)
	}
	return hosts, nil
}

// SplitHostList splits ORBIT_HOSTS: addresses separated by spaces, commas
// or newlines.
func SplitHostList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// HostResult is one host's part of a fleet run; the JSON shape is part of
// orbit's output contract (docs/remote.md).
type HostResult struct {
	Host       string          `json:"host"`
	ExitCode   int             `json:"exit_code"`
	DurationMS int64           `json:"duration_ms"`
	Output     json.RawMessage `json:"output,omitempty"` // the command's JSON, when it printed JSON
	Stdout     *string         `json:"stdout,omitempty"` // else its standard output
	Stderr     string          `json:"stderr,omitempty"`
	Error      string          `json:"error,omitempty"` // orbit's own error (could not connect, sudo refused, ...)

	firstError string
	duration   time.Duration
}

// FleetResult is the --output json document of a fleet run.
type FleetResult struct {
	Hosts     []*HostResult `json:"hosts"`
	Succeeded int           `json:"succeeded"`
	Failed    int           `json:"failed"`
}

// RunFleet runs cmd on every host, at most o.Parallel at once. A host that
// fails, to connect or otherwise, never stops the others; ctx ending
// (Ctrl-C) stops every remote command. Text output prefixes each line with
// its host and ends with a summary table; JSON output is one FleetResult.
// The error is nil only when every host exited 0.
func RunFleet(ctx context.Context, o Options, hosts []string, cmd Command, jsonOut bool, ios *iostreams.IOStreams) error {
	if err := o.defaults(); err != nil {
		return err
	}
	cfg, err := o.loadSSHConfig()
	if err != nil {
		return err
	}
	hosts = uniq(hosts)
	// A typo in one address is the script's mistake, not that host's
	// failure: refuse the run before connecting anywhere.
	for _, h := range hosts {
		if _, err := ParseAddress(h); err != nil {
			return err
		}
	}
	// The same input goes to every host: a secret for register, say. A
	// terminal is not read (nobody types to ten hosts at once).
	var in *broadcast
	if cmd.Secret == "" && !ios.IsStdinTTY() && ios.In != nil {
		in = newBroadcast(ios.In)
	}

	width := 0
	for _, h := range hosts {
		width = max(width, len(h))
	}
	var mu sync.Mutex // one line at a time on the shared outputs
	results := make([]*HostResult, len(hosts))
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for i, h := range hosts {
		results[i] = &HostResult{Host: h}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i].finish(exitcode.Withf(exitcode.Interrupted, "interrupted before connecting"), nil, nil, 0)
				return
			}
			defer func() { <-sem }()
			st := streams{in: strings.NewReader("")}
			if in != nil {
				st.in = in.reader()
			}
			var outBuf, errBuf bytes.Buffer
			var po, pe *prefixWriter
			if jsonOut {
				st.out, st.errOut = &outBuf, &errBuf
			} else {
				prefix := fmt.Sprintf("%-*s | ", width, h)
				po = &prefixWriter{w: ios.Out, mu: &mu, prefix: prefix}
				pe = &prefixWriter{w: ios.ErrOut, mu: &mu, prefix: prefix, first: &results[i].firstError}
				st.out, st.errOut = po, pe
			}
			start := time.Now()
			o := o
			err := o.runOn(ctx, cfg, h, cmd, st)
			if po != nil {
				po.Flush()
				pe.Flush()
				if err != nil && !isSilent(err) {
					for line := range strings.Lines(err.Error()) {
						pe.Write([]byte("orbit: " + line))
					}
					pe.Flush()
				}
			}
			results[i].finish(err, &outBuf, &errBuf, time.Since(start))
		}()
	}
	wg.Wait()

	doc := FleetResult{Hosts: results}
	for _, r := range results {
		if r.ExitCode == 0 {
			doc.Succeeded++
		} else {
			doc.Failed++
		}
	}
	if jsonOut {
		if err := output.WriteJSON(ios.Out, doc); err != nil {
			return err
		}
	} else {
		writeSummary(ios.Out, doc)
	}
	switch {
	case ctx.Err() != nil:
		return exitcode.Silent(exitcode.Interrupted)
	case doc.Failed > 0:
		return exitcode.Silent(exitcode.HostsFailed)
	}
	return nil
}

func isSilent(err error) bool {
	var ee *exitcode.ExitError
	return errors.As(err, &ee) && ee.Err == nil
}

// finish records how the host's run ended. out and errOut hold its output
// when it was collected for JSON.
func (r *HostResult) finish(err error, out, errOut *bytes.Buffer, d time.Duration) {
	r.duration = d
	r.DurationMS = d.Milliseconds()
	r.ExitCode = int(exitcode.Of(err))
	if err != nil && !isSilent(err) {
		r.Error = err.Error()
		r.firstError, _, _ = strings.Cut(r.Error, "\n")
	}
	if errOut != nil && errOut.Len() > 0 {
		r.Stderr = errOut.String()
		if r.firstError == "" && r.ExitCode != 0 {
			r.firstError = firstLine(r.Stderr)
		}
	}
	if out == nil {
		return
	}
	if v, ok := parseJSONOutput(out.Bytes()); ok {
		r.Output = v
		return
	}
	if out.Len() > 0 || r.Error == "" {
		s := out.String()
		r.Stdout = &s
	}
}

func firstLine(s string) string {
	for line := range strings.Lines(s) {
		if t := strings.TrimSpace(line); t != "" {
			return t
		}
	}
	return ""
}

// parseJSONOutput takes a command's standard output as JSON: one value as
// it is, several (JSON lines, as a --follow stream prints) as an array.
func parseJSONOutput(b []byte) (json.RawMessage, bool) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var vals []json.RawMessage
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false
		}
		vals = append(vals, v)
	}
	if len(vals) == 1 {
		return vals[0], true
	}
	all, err := json.Marshal(vals)
	return all, err == nil
}

func writeSummary(w io.Writer, doc FleetResult) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tEXIT\tDURATION\tERROR")
	for _, r := range doc.Hosts {
		name := ""
		for _, e := range exitcode.Table {
			if int(e.Code) == r.ExitCode {
				name = " (" + e.Name + ")"
			}
		}
		why := ""
		if r.ExitCode != 0 {
			why = r.firstError // a warning of a host that succeeded is no error
		}
		fmt.Fprintf(tw, "%s\t%d%s\t%s\t%s\n", r.Host, r.ExitCode, name, r.duration.Round(time.Millisecond), why)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d of %d hosts succeeded\n", doc.Succeeded, len(doc.Hosts))
}

// prefixWriter writes whole lines, each after prefix, to a writer shared
// with other hosts; first, when set, keeps the first non-empty line.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
	first  *string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.emit(p.buf[:i+1])
		p.buf = p.buf[i+1:]
	}
}

// Flush ends a last line that had no newline.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		p.emit(append(p.buf, '\n'))
		p.buf = nil
	}
}

func (p *prefixWriter) emit(line []byte) {
	if p.first != nil && *p.first == "" {
		*p.first = strings.TrimSpace(string(line))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = io.WriteString(p.w, p.prefix)
	_, _ = p.w.Write(line)
}

// broadcast reads one input once and gives every host all of it: each
// reader sees everything read so far and waits for more until the input
// ends.
type broadcast struct {
	mu   sync.Mutex
	cond *sync.Cond
	data []byte
	err  error
}

func newBroadcast(r io.Reader) *broadcast {
	b := &broadcast{}
	b.cond = sync.NewCond(&b.mu)
	go func() {
		br := bufio.NewReader(r)
		buf := make([]byte, 32*1024)
		for {
			n, err := br.Read(buf)
			b.mu.Lock()
			b.data = append(b.data, buf[:n]...)
			if err != nil {
				b.err = err
			}
			b.cond.Broadcast()
			b.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return b
}

func (b *broadcast) reader() io.Reader { return &broadcastReader{b: b} }

type broadcastReader struct {
	b   *broadcast
	off int
}

func (r *broadcastReader) Read(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	for r.off >= len(b.data) && b.err == nil {
		b.cond.Wait()
	}
	if r.off < len(b.data) {
		n := copy(p, b.data[r.off:])
		r.off += n
		return n, nil
	}
	if errors.Is(b.err, io.EOF) {
		return 0, io.EOF
	}
	return 0, b.err
}
