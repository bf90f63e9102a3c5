package integration

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestSlowClientIsDisconnected: a client that never finishes its request
// headers is cut off after read_header_timeout (SPEC §12.6).
func TestSlowClientIsDisconnected(t *testing.T) {
	idp := startIdP(t, 300, "opaque")
	up := startUpstream(t)
	a := startAuthgress(t, "[server]\nread_header_timeout = \"1s\"\n"+config(idp.TokenURL(), up.Addr, ""))
	c, err := net.Dial("tcp", a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET http://"+up.Addr+"/ HTTP/1.1\r\nHost: x\r\n"); err != nil { // no final CRLF
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(c)
	if err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("connection not closed by the proxy after the header timeout: %v after %v", err, time.Since(start))
	}
}
