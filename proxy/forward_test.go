package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readFromRecorder is a ResponseWriter that, like net/http's, has ReadFrom.
type readFromRecorder struct {
	*httptest.ResponseRecorder
	readFroms, flushes int
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.readFroms++
	return io.Copy(r.ResponseRecorder.Body, src)
}

func (r *readFromRecorder) Flush() { r.flushes++ }

// TestStreamWriterKeepsReadFrom guards the hot path: io.Copy into the
// wrapper must reach the server's ReadFrom for responses of known length
// (otherwise every response allocates a 32 KiB copy buffer), and must flush
// chunk by chunk for streams.
func TestStreamWriterKeepsReadFrom(t *testing.T) {
	rec := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	sw := &streamWriter{ResponseWriter: rec}
	sw.Header().Set("Content-Length", "5")
	sw.WriteHeader(http.StatusOK)
	if _, err := io.Copy(sw, struct{ io.Reader }{strings.NewReader("hello")}); err != nil { // a body without WriteTo, like the upstream's
		t.Fatal(err)
	}
	if rec.readFroms != 1 || rec.Body.String() != "hello" {
		t.Fatalf("known length: ReadFrom calls %d, body %q", rec.readFroms, rec.Body.String())
	}

	rec = &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	sw = &streamWriter{ResponseWriter: rec}
	sw.WriteHeader(http.StatusOK) // no Content-Length: a stream
	if _, err := io.Copy(sw, struct{ io.Reader }{strings.NewReader("chunk")}); err != nil {
		t.Fatal(err)
	}
	if rec.readFroms != 0 || rec.flushes == 0 || rec.Body.String() != "chunk" {
		t.Fatalf("stream: ReadFrom calls %d, flushes %d, body %q", rec.readFroms, rec.flushes, rec.Body.String())
	}
}
