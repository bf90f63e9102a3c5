package engine

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The access line is the same through the fast path (logline, which the
// harness and `authgress run` use) and through slog alone (an engine given
// only a logger): same fields, same order, same quoting.
func TestAccessLineSameWithAndWithoutFastPath(t *testing.T) {
	up, i := newUpstream(t), newIDP(t)
	fast := newHarness(t, baseConfig, up, i)
	slogOnly = true
	slow := newHarness(t, baseConfig, up, i)
	slogOnly = false
	timeRe := regexp.MustCompile(`^time=\S+ `)
	durRe := regexp.MustCompile(`duration_ms=[0-9.e+-]+`)
	line := func(h *harness, target string) string {
		before := len(h.logText())
		req, _ := http.NewRequest("GET", target, nil)
		req.Header.Set("Proxy-Authorization", "Basic x")
		h.do(req)
		for _, l := range strings.Split(h.logText()[before:], "\n") {
			if strings.Contains(l, "msg=request") {
				return durRe.ReplaceAllString(timeRe.ReplaceAllString(l, ""), "duration_ms=D")
			}
		}
		t.Fatalf("no access line for %s", target)
		return ""
	}
	for _, target := range []string{
		"http://" + up.hostPort() + "/v1/things?x=1",
		"http://" + up.hostPort() + "/with%20space/é",
		"http://unmatched.invalid/x",
	} {
		f, s := line(fast, target), line(slow, target)
		if f != s {
			t.Errorf("%s:\nfast %s\nslog %s", target, f, s)
		}
	}
}
