// Package journaltest writes real journal files for tests, with
// systemd-journal-remote, so that readers are tested against journalctl
// itself rather than against a fake of its output.
package journaltest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// JournalRemote is the program that turns export-format records into a
// journal file.
const JournalRemote = "/lib/systemd/systemd-journal-remote"

// Rec is one entry in export form: field names and values in order, so
// repeated fields can be expressed.
type Rec [][2]string

// Base is the realtime timestamp of entry 0 of a generated journal.
var Base = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// Write turns records into a real journal file (appending when the file
// exists) and returns its path. Record i gets realtime Base+(first+i) ms and
// the address fields a journal file needs, unless it sets them itself. The
// test is skipped when systemd-journal-remote is missing.
func Write(tb testing.TB, path string, first int, recs ...Rec) string {
	tb.Helper()
	if _, err := os.Stat(JournalRemote); err != nil {
		tb.Skipf("%s is missing (apt-get install systemd-journal-remote, or run .ci/install-deps.sh): %v", JournalRemote, err)
	}
	var buf bytes.Buffer
	for i, r := range recs {
		n := first + i
		have := map[string]bool{}
		for _, kv := range r {
			have[kv[0]] = true
		}
		if !have["__REALTIME_TIMESTAMP"] {
			fmt.Fprintf(&buf, "__REALTIME_TIMESTAMP=%d\n", Base.Add(time.Duration(n)*time.Millisecond).UnixMicro())
		}
		if !have["__MONOTONIC_TIMESTAMP"] {
			fmt.Fprintf(&buf, "__MONOTONIC_TIMESTAMP=%d\n", 1000+n*1000)
		}
		if !have["_BOOT_ID"] {
			buf.WriteString("_BOOT_ID=0123456789abcdef0123456789abcdef\n")
		}
		for _, kv := range r {
			writeExportField(&buf, kv[0], kv[1])
		}
		buf.WriteByte('\n')
	}
	export := path + fmt.Sprintf(".%d.export", first)
	if err := os.WriteFile(export, buf.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command(JournalRemote, "-o", path, export).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s -o %s %s: %v\n%s", JournalRemote, path, export, err, out)
	}
	return path
}

// writeExportField uses the binary-safe form for values that the text form
// cannot carry (newlines, control bytes, invalid UTF-8).
func writeExportField(buf *bytes.Buffer, name, value string) {
	safe := true
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 || c >= 0x7f {
			safe = false
			break
		}
	}
	if safe {
		fmt.Fprintf(buf, "%s=%s\n", name, value)
		return
	}
	buf.WriteString(name)
	buf.WriteByte('\n')
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(value)))
	buf.Write(n[:])
	buf.WriteString(value)
	buf.WriteByte('\n')
}
