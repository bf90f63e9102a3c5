package conf

import (
	"bytes"
	"fmt"
)

// Limits on config input, so that no file can hang or exhaust authgress: the
// TOML library reads the whole file into memory and recurses once per level
// of nesting.
const (
	// MaxConfigSize is the largest config file authgress reads (4 MiB).
	MaxConfigSize = 4 << 20
	// MaxNesting is how deep tables, inline tables, arrays and dotted keys
	// may nest.
	MaxNesting = 64
)

const utf8BOM = "\xef\xbb\xbf"

// precheck applies the input limits before the text reaches a TOML parser.
// It returns the text without a leading UTF-8 byte order mark, or the
// problem that refuses it.
func precheck(path string, data []byte) ([]byte, *Problem) {
	if len(data) > MaxConfigSize {
		return nil, &Problem{File: path, Msg: fmt.Sprintf("the config file is larger than %d MiB: authgress does not read it", MaxConfigSize>>20)}
	}
	data = bytes.TrimPrefix(data, []byte(utf8BOM))
	if line, deep := nesting(data, MaxNesting); deep {
		return nil, &Problem{File: path, Pos: Pos{Line: line}, Msg: fmt.Sprintf("tables, inline tables, arrays and dotted keys nest more than %d levels deep here: authgress does not read such input", MaxNesting)}
	}
	return data, nil
}

// nesting is a cheap scan of TOML text that measures how deep its values
// nest, counting a table header's and a dotted key's parts, inline tables and
// arrays. It stops at the first line where the depth goes over max (deep is
// then true). It reads strings and comments as TOML does, so brackets inside
// them do not count; on text that is not valid TOML its answer only has to be
// bounded, since the parser refuses that text anyway. The depth it measures is
// never less than the depth of the parsed document (FuzzNesting checks this).
func nesting(src []byte, max int) (line int, deep bool) {
	_, line, deep = nestingDepth(src, max)
	return line, deep
}

// nestingDepth is nesting that also returns the deepest level seen.
func nestingDepth(src []byte, max int) (deepest, line int, deep bool) {
	type frame struct {
		table bool // '{': keys inside; '[': values inside
		depth int  // '{': the inline table's depth; '[': its elements' depth
		outer int  // the table depth to restore when it closes
	}
	var stack []frame
	line = 1
	tbl := 0        // depth of the table whose keys are being read
	parts := 1      // parts of the key being read
	keyPos := true  // reading a key, not a value
	header := false // inside a [table] or [[array table]] header
	arrayHdr := false
	over := func(d int) bool {
		if d > deepest {
			deepest = d
		}
		return d > max
	}
	// valueDepth is the depth of a value starting here: an array element,
	// or the value of the key just read.
	valueDepth := func() int {
		if n := len(stack); n > 0 && !stack[n-1].table {
			return stack[n-1].depth
		}
		return tbl + parts
	}
	for i := 0; i < len(src); {
		c := src[i]
		switch c {
		case '\n':
			line++
			if len(stack) == 0 {
				keyPos, parts, header = true, 1, false
			}
			i++
		case '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case '"', '\'':
			var n int
			i, n = skipString(src, i, !keyPos)
			line += n
		case '.':
			if keyPos {
				parts++
			}
			i++
		case '=':
			if keyPos && !header {
				keyPos = false
				if over(tbl + parts) {
					return deepest, line, true
				}
			}
			i++
		case '[':
			if keyPos && len(stack) == 0 && !header {
				header, parts = true, 1
				arrayHdr = i+1 < len(src) && src[i+1] == '['
				i++
				if arrayHdr {
					i++
				}
				continue
			}
			d := valueDepth() + 1
			stack = append(stack, frame{table: false, depth: d, outer: tbl})
			keyPos = false
			if over(d) {
				return deepest, line, true
			}
			i++
		case ']':
			switch {
			case header:
				header = false
				tbl = parts
				if arrayHdr {
					tbl++
					if i+1 < len(src) && src[i+1] == ']' {
						i++
					}
				}
				keyPos, parts = false, 1
				if over(tbl) {
					return deepest, line, true
				}
			case len(stack) > 0 && !stack[len(stack)-1].table:
				stack = stack[:len(stack)-1]
				keyPos = false
			}
			i++
		case '{':
			d := valueDepth()
			stack = append(stack, frame{table: true, depth: d, outer: tbl})
			tbl, keyPos, parts = d, true, 1
			if over(d) {
				return deepest, line, true
			}
			i++
		case '}':
			if n := len(stack); n > 0 && stack[n-1].table {
				tbl = stack[n-1].outer
				stack = stack[:n-1]
				keyPos = false
			}
			i++
		case ',':
			if n := len(stack); n > 0 && stack[n-1].table {
				keyPos, parts = true, 1
			}
			i++
		default:
			i++
		}
	}
	return deepest, line, false
}

// skipString skips the string that starts at src[i] (a quote) and returns the
// index after it and the number of newlines inside it. With multiline, a
// triple quote starts a multi-line string.
func skipString(src []byte, i int, multiline bool) (int, int) {
	q := src[i]
	if multiline && i+2 < len(src) && src[i+1] == q && src[i+2] == q {
		newlines := 0
		for i += 3; i < len(src); {
			switch {
			case src[i] == '\\' && q == '"':
				if i+1 < len(src) && src[i+1] == '\n' {
					newlines++
				}
				i += 2
			case src[i] == q && i+2 < len(src) && src[i+1] == q && src[i+2] == q:
				i += 3
				for k := 0; k < 2 && i < len(src) && src[i] == q; k++ { // up to two more quotes belong to the string
					i++
				}
				return i, newlines
			default:
				if src[i] == '\n' {
					newlines++
				}
				i++
			}
		}
		return len(src), newlines
	}
	for i++; i < len(src); i++ {
		switch src[i] {
		case '\n':
			return i, 0 // unterminated: the parser refuses it
		case '\\':
			if q == '"' && i+1 < len(src) && src[i+1] != '\n' {
				i++
			}
		case q:
			return i + 1, 0
		}
	}
	return len(src), 0
}
