// Package safetext makes text that a remote server sent (OAuth
// error_description, CyberArk ErrorMsg, Vault errors) safe for a
// client-visible message or a log line: every secret and token value the
// process knows is redacted (Register, Redact), and the text is bounded to
// printable ASCII of capped length (Clip). Clean does both.
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
