//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1

import "syscall"

// peek looks at an idle connection's socket without reading from it or
// waiting.
func (pc *conn) peek(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	// n == 0: the server closed it; n > 0: it sent something unasked (or a
	// TLS alert); EAGAIN: nothing to read, as an idle connection should be.
	pc.peekOK = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
	return true
}
