// Package safetext bounds text that a remote server sent (OAuth
// error_description, CyberArk ErrorMsg, Vault errors) before it goes into a
// client-visible message or a log line: printable ASCII only, length capped.
package safetext

import "strings"

// Clip keeps printable ASCII of s, at most max bytes, marking a cut with "…".
func Clip(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			b.WriteString("…")
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		}
	}
	return b.String()
}
