package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
)

// streamWriter records the status and flushes after every write when the
// response has no Content-Length (chunked, SSE, NDJSON), so streams reach the
// client as the upstream writes them.
type streamWriter struct {
	http.ResponseWriter
	status int
	stream bool
}

func (s *streamWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
		s.stream = s.Header().Get("Content-Length") == ""
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	n, err := s.ResponseWriter.Write(p)
	if s.stream {
		if fl, ok := s.ResponseWriter.(http.Flusher); ok {
			fl.Flush()
		}
	}
	return n, err
}

// ReadFrom keeps the ResponseWriter's own ReadFrom reachable for responses
// of known length: without it io.Copy allocates a 32 KiB buffer per
// response. Streams are copied through a pooled buffer, flushed per chunk.
func (s *streamWriter) ReadFrom(r io.Reader) (int64, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok && !s.stream {
		return rf.ReadFrom(r)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(writerOnly{s}, r, *buf)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writerOnly hides ReadFrom so io.CopyBuffer uses the buffer it is given.
type writerOnly struct{ io.Writer }

func (s *streamWriter) Flush() {
	if fl, ok := s.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (s *streamWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// goproxyLogger sends goproxy's own messages to the debug log.
type goproxyLogger struct{ log *slog.Logger }

func (g goproxyLogger) Printf(format string, v ...any) {
	g.log.Debug("goproxy", "msg", fmt.Sprintf(format, v...))
}
