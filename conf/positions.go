package conf

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// Pos is a 1-based line and column (in bytes) in the config file.
type Pos struct{ Line, Col int }

// positions maps dotted key paths to where the key is written. The TOML
// library that decodes the config (BurntSushi/toml) keeps key positions
// internally but does not export them, so they are taken from the AST of a
// second, complete TOML parser (go-toml's unstable parser, TOML 1.1 like the
// decoder) rather than from a hand-written scanner: keys are unescaped and
// dotted keys split by a real parser. Paths are recorded twice: with array
// indices ("clusters.dmz.nodes[1].url") and without ("clusters.dmz.nodes.url",
// first occurrence), because the decoder's key paths carry no indices.
type positions map[string]Pos

func (p positions) lookup(path string) (Pos, bool) {
	for {
		if pos, ok := p[path]; ok {
			return pos, true
		}
		if pos, ok := p[stripIndices(path)]; ok {
			return pos, true
		}
		if pos, ok := p[strings.ToLower(path)]; ok {
			return pos, true
		}
		// fall back to the enclosing key
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return Pos{}, false
		}
		path = path[:i]
	}
}

func stripIndices(path string) string {
	if !strings.Contains(path, "[") {
		return path
	}
	var b strings.Builder
	skip := false
	for _, r := range path {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// indexer walks the parser's AST and records positions.
type indexer struct {
	src   []byte
	lines []int // byte offset where each line starts
	pos   positions
	// arrays counts the elements of each array of tables seen so far, by
	// its path with indices.
	arrays map[string]int
}

// indexPositions parses src and returns where each key is written. The
// error is the parser's, with its position, if it refuses the text.
func indexPositions(src []byte) (positions, *Problem) {
	ix := &indexer{src: src, lines: []int{0}, pos: positions{}, arrays: map[string]int{}}
	for i, c := range src {
		if c == '\n' {
			ix.lines = append(ix.lines, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(src)
	table, top := "", true // top: no [table] header yet
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			it := e.Key()
			at := ix.header(e.Child())
			path := ix.headerPath(&it, at)
			if e.Kind == unstable.ArrayTable {
				n := ix.arrays[path]
				ix.arrays[path] = n + 1
				ix.record(path, at)
				path += "[" + strconv.Itoa(n) + "]"
			}
			ix.record(path, at)
			table, top = path, false
		case unstable.KeyValue:
			ix.keyValue(table, top, e)
		}
	}
	if err := p.Error(); err != nil {
		prob := &Problem{Msg: err.Error()}
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			prob.Msg = perr.Message
			if off, ok := ix.offsetOf(perr.Highlight); ok {
				prob.Pos = ix.at(off)
			}
		}
		return ix.pos, prob
	}
	return ix.pos, nil
}

// offsetOf returns where b, a slice of the parsed text, starts in it.
func (ix *indexer) offsetOf(b []byte) (int, bool) {
	if b == nil {
		return 0, false
	}
	off := cap(ix.src) - cap(b)
	return off, off >= 0 && off <= len(ix.src)
}

func (ix *indexer) at(off int) Pos {
	line := sort.Search(len(ix.lines), func(i int) bool { return ix.lines[i] > off })
	return Pos{Line: line, Col: off - ix.lines[line-1] + 1}
}

// header is the position of the '[' before a table header's first key.
func (ix *indexer) header(first *unstable.Node) Pos {
	off := int(first.Raw.Offset)
	for off > 0 && (ix.src[off-1] == ' ' || ix.src[off-1] == '\t' || ix.src[off-1] == '[') {
		off--
	}
	return ix.at(off)
}

// headerPath joins a table header's key parts, giving each part that names an
// array of tables defined before the index of its last element, as TOML
// does ([[a]] then [a.b] adds b to the last element of a). The tables the
// header defines implicitly (a for [a.b]) are recorded at it, unless they
// are written elsewhere first.
func (ix *indexer) headerPath(it *unstable.Iterator, at Pos) string {
	path := ""
	for i := 0; it.Next(); i++ {
		k := it.Node()
		if i == 0 {
			path = string(k.Data)
			continue
		}
		ix.record(path, at)
		if n, ok := ix.arrays[path]; ok && n > 0 {
			path += "[" + strconv.Itoa(n-1) + "]"
		}
		path += "." + string(k.Data)
	}
	return path
}

func (ix *indexer) record(path string, at Pos) {
	ix.recordOnce(path, at)
	ix.recordOnce(stripIndices(path), at)
}

// recordOnce records path at its first occurrence, and under its lower-case
// spelling too: the TOML library matches schema keys case-insensitively
// ([Credentials.x] fills credentials.x, an error reported as such), and
// validation names the schema's spelling.
func (ix *indexer) recordOnce(path string, at Pos) {
	if _, ok := ix.pos[path]; !ok {
		ix.pos[path] = at
	}
	if lower := strings.ToLower(path); lower != path {
		if _, ok := ix.pos[lower]; !ok {
			ix.pos[lower] = at
		}
	}
}

// keyValue records a key = value expression under prefix (top: at the top
// level, where there is no prefix), each part of a dotted key at the key's
// position, then what the value holds. Key parts may be empty ("" = 1).
func (ix *indexer) keyValue(prefix string, top bool, kv *unstable.Node) {
	path := prefix
	var at Pos
	it := kv.Key()
	for i := 0; it.Next(); i++ {
		k := it.Node()
		if i == 0 {
			at = ix.at(int(k.Raw.Offset))
		}
		if i == 0 && top {
			path = string(k.Data)
		} else {
			path += "." + string(k.Data)
		}
		ix.record(path, at)
	}
	ix.value(path, kv.Value())
}

func (ix *indexer) value(path string, v *unstable.Node) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if n := it.Node(); n.Kind == unstable.KeyValue {
				ix.keyValue(path, false, n)
			}
		}
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); {
			n := it.Node()
			if n.Kind == unstable.Comment {
				continue
			}
			elem := path + "[" + strconv.Itoa(i) + "]"
			if at, ok := ix.valuePos(n); ok {
				ix.record(elem, at)
			}
			ix.value(elem, n)
			i++
		}
	}
}

// valuePos is where a value starts: arrays carry no range, so an array is
// placed at its first element.
func (ix *indexer) valuePos(n *unstable.Node) (Pos, bool) {
	for n != nil && n.Kind == unstable.Array {
		n = n.Child()
		for n != nil && n.Kind == unstable.Comment {
			n = n.Next()
		}
	}
	if n == nil || !n.Valid() {
		return Pos{}, false
	}
	return ix.at(int(n.Raw.Offset)), true
}
