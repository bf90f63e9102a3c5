package logline

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"testing"
	"time"
)

// Lines must be byte for byte what slog's handlers write.
func TestLinesMatchSlog(t *testing.T) {
	strs := []string{"", "plain", "with space", "a=b", `quote"d`, `back\slash`, "tab\there", "nl\nx", "ctl\x01", "del\x7f",
		"café", "日本", "bad\xffutf8", "line\u2028sep", "nbsp\u00a0", "/v1/items?x=1", "<html>&"}
	floats := []float64{0, 0.001, 0.123, 1.5, 12.345, 1234.567, 1e-7, 3e21, 123456789.123}
	at := []time.Time{time.Date(2026, 11, 28, 4, 36, 15, 123456789, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)),
		time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.UTC)}
	for _, json := range []bool{false, true} {
		for i, s := range strs {
			f := floats[i%len(floats)]
			tm := at[i%len(at)]
			host, port := s, "443"
			if i%3 == 0 {
				host = "::1"
			}
			var want bytes.Buffer
			var h slog.Handler = slog.NewTextHandler(&want, nil)
			if json {
				h = slog.NewJSONHandler(&want, nil)
			}
			r := slog.NewRecord(tm, slog.LevelInfo, "request", 0)
			r.AddAttrs(slog.String("connection", s), slog.String(s+"k", "v"), slog.String("host", net.JoinHostPort(host, port)),
				slog.Int("status", 200+i), slog.Float64("duration_ms", f), slog.Bool("replayed_after_401", i%2 == 0), slog.Int("retries", -i))
			if err := h.Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			New(&got, json).Begin(tm, "request").Str("connection", s).Str(s+"k", "v").HostPort("host", host, port).
				Int("status", 200+i).Float("duration_ms", f).Bool("replayed_after_401", i%2 == 0).Int("retries", -i).End()
			if got.String() != want.String() {
				t.Errorf("json=%v %q:\n got %s\nwant %s", json, s, got.String(), want.String())
			}
		}
	}
}

func TestLineDoesNotAllocate(t *testing.T) {
	w := New(discard{}, false)
	tm := time.Now()
	n := testing.AllocsPerRun(100, func() {
		w.Begin(tm, "request").Str("connection", "api").Str("method", "GET").HostPort("host", "api.example.com", "443").
			Str("path", "/v1/items").Int("status", 200).Float("duration_ms", 1.234).Str("reason", "matched").End()
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
