package main

import (
	"testing"
	"time"

	"github.com/authgress/authgress/internal/testlog"
)

func TestLogWriterFlushesPeriodicallyAndOnClose(t *testing.T) {
	var out testlog.Buffer
	w := newLogWriter(&out, 50*time.Millisecond)
	_, _ = w.Write([]byte("first\n"))
	if out.String() != "" {
		t.Fatal("written through without buffering")
	}
	deadline := time.Now().Add(2 * time.Second)
	for out.String() != "first\n" {
		if time.Now().After(deadline) {
			t.Fatal("not flushed by the ticker")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _ = w.Write([]byte("last\n"))
	w.Close()
	if out.String() != "first\nlast\n" {
		t.Fatalf("Close lost output: %q", out.String())
	}
}
