package main

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestLogWriterFlushesPeriodicallyAndOnClose(t *testing.T) {
	var out lockedBuffer
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
