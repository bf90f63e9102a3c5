// Package logline writes one log line the way log/slog's TextHandler or
// JSONHandler (no options) writes it at level INFO, byte for byte, without
// slog's per-record machinery: no Record, no attribute copies, no handler
// state; a pooled buffer and one Write. authgress's access line (one per
// request) uses it; every other line goes through slog.
package logline

import (
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// Writer writes lines to w, in slog's JSON format if json is set, its text
// format otherwise. Each line is one Write; w must accept concurrent
// Writes (as a slog handler's writer does not have to: slog locks around
// it).
type Writer struct {
	w    io.Writer
	json bool
}

// New returns a Writer.
func New(w io.Writer, json bool) *Writer { return &Writer{w: w, json: json} }

// Line is a line being built; Begin starts one, End writes it.
type Line struct {
	w   *Writer
	buf []byte
}

var lines = sync.Pool{New: func() any { return &Line{buf: make([]byte, 0, 512)} }}

// Begin starts an INFO line with the time t and the message msg.
func (w *Writer) Begin(t time.Time, msg string) *Line {
	l := lines.Get().(*Line)
	l.w, l.buf = w, l.buf[:0]
	t = t.Round(0)
	if w.json {
		l.buf = append(l.buf, `{"time":"`...)
		l.buf = t.AppendFormat(l.buf, time.RFC3339Nano)
		l.buf = append(l.buf, `","level":"INFO","msg":`...)
	} else {
		l.buf = append(l.buf, "time="...)
		l.buf = appendRFC3339Millis(l.buf, t)
		l.buf = append(l.buf, " level=INFO msg="...)
	}
	l.str(msg)
	return l
}

// End writes the line and releases it.
func (l *Line) End() {
	if l.w.json {
		l.buf = append(l.buf, "}\n"...)
	} else {
		l.buf = append(l.buf, '\n')
	}
	_, _ = l.w.w.Write(l.buf) // one Write per line; w serialises them
	if cap(l.buf) <= 4<<10 {
		lines.Put(l)
	}
}

func (l *Line) key(k string) {
	if l.w.json {
		l.buf = append(l.buf, ',')
		l.str(k)
		l.buf = append(l.buf, ':')
	} else {
		l.buf = append(l.buf, ' ')
		l.str(k)
		l.buf = append(l.buf, '=')
	}
}

func (l *Line) str(s string) {
	if l.w.json {
		l.buf = append(l.buf, '"')
		l.buf = appendEscapedJSONString(l.buf, s)
		l.buf = append(l.buf, '"')
	} else if needsQuoting(s) {
		l.buf = strconv.AppendQuote(l.buf, s)
	} else {
		l.buf = append(l.buf, s...)
	}
}

// Str adds a string attribute.
func (l *Line) Str(k, v string) *Line { l.key(k); l.str(v); return l }

// HostPort adds host:port as one string attribute, as net.JoinHostPort
// would make it.
func (l *Line) HostPort(k, host, port string) *Line {
	l.key(k)
	var b [300]byte
	s := b[:0]
	if len(host) > 0 && strings.IndexByte(host, ':') >= 0 {
		s = append(s, '[')
		s = append(s, host...)
		s = append(s, ']')
	} else {
		s = append(s, host...)
	}
	s = append(s, ':')
	s = append(s, port...)
	l.str(unsafe.String(unsafe.SliceData(s), len(s))) // str copies it
	return l
}

// Int adds an integer attribute.
func (l *Line) Int(k string, v int) *Line {
	l.key(k)
	l.buf = strconv.AppendInt(l.buf, int64(v), 10)
	return l
}

// Bool adds a boolean attribute.
func (l *Line) Bool(k string, v bool) *Line {
	l.key(k)
	l.buf = strconv.AppendBool(l.buf, v)
	return l
}

// Float adds a float attribute (finite values: slog reports NaN and ±Inf
// as a JSON error, which this does not reproduce).
func (l *Line) Float(k string, v float64) *Line {
	l.key(k)
	if !l.w.json {
		l.buf = strconv.AppendFloat(l.buf, v, 'g', -1, 64)
		return l
	}
	// encoding/json's float format, which slog's JSONHandler uses.
	format := byte('f')
	if abs := math.Abs(v); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	l.buf = strconv.AppendFloat(l.buf, v, format, -1, 64)
	if format == 'e' {
		n := len(l.buf)
		if n >= 4 && l.buf[n-4] == 'e' && l.buf[n-3] == '-' && l.buf[n-2] == '0' {
			l.buf[n-2] = l.buf[n-1]
			l.buf = l.buf[:n-1]
		}
	}
	return l
}

// appendRFC3339Millis is slog's text time format.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...) // drop the 4th digit
}

// safe reports whether an ASCII byte goes into a JSON string unescaped.
func safe(b byte) bool { return b >= 0x20 && b != '"' && b != '\\' }

// needsQuoting is slog's text rule for quoting a string.
func needsQuoting(s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b != '\\' && (b == ' ' || b == '=' || !safe(b)) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

const hex = "0123456789abcdef"

// appendEscapedJSONString is slog's JSON string escaping.
func appendEscapedJSONString(buf []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if safe(b) {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\')
			switch b {
			case '\\', '"':
				buf = append(buf, b)
			case '\n':
				buf = append(buf, 'n')
			case '\r':
				buf = append(buf, 'r')
			case '\t':
				buf = append(buf, 't')
			default:
				buf = append(buf, 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\u202`...)
			buf = append(buf, hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(buf, s[start:]...)
}
