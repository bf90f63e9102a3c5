package proxy

import (
	"bytes"
	"io"
	"net/http"
)

// ReplayLimit is the largest request body kept in memory so that the request
// can be sent again after a 401. Larger or unfinished bodies stream through
// and are not replayed.
const ReplayLimit = 1 << 20

// prepareReplay makes req's body replayable if it is at most ReplayLimit
// bytes, and reports whether it is. A body of unknown length is read up to the
// limit; if it is longer, what was read is put back in front of the rest.
func prepareReplay(req *http.Request) (bool, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		req.Body = http.NoBody
		req.GetBody = noBody
		return true, nil
	}
	if req.ContentLength > ReplayLimit {
		return false, nil
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, ReplayLimit+1))
	if err != nil {
		return false, err
	}
	if len(buf) > ReplayLimit {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		return false, nil
	}
	_ = req.Body.Close()
	req.ContentLength = int64(len(buf))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	req.Body, _ = req.GetBody()
	return true, nil
}

func noBody() (io.ReadCloser, error) { return http.NoBody, nil }
