package conf

import (
	"strconv"
	"strings"
)

// Pos is a 1-based line and column in the config file.
type Pos struct{ Line, Col int }

// positions maps dotted key paths to where the key is written. The TOML library
// does not export key positions, so this scanner reads the (already parsed, so
// syntactically valid) text once. Paths are recorded twice: with array indices
// ("clusters.dmz.nodes[1].url") and without ("clusters.dmz.nodes.url", first
// occurrence), because the library's key paths carry no indices.
type positions map[string]Pos

func (p positions) lookup(path string) (Pos, bool) {
	for path != "" {
		if pos, ok := p[path]; ok {
			return pos, true
		}
		if pos, ok := p[stripIndices(path)]; ok {
			return pos, true
		}
		// fall back to the enclosing key
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return Pos{}, false
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

type scanner struct {
	src         string
	i           int
	line, col   int
	pos         positions
	arrayTables map[string]int
}

func indexPositions(src string) positions {
	s := &scanner{src: src, line: 1, col: 1, pos: positions{}, arrayTables: map[string]int{}}
	s.document()
	return s.pos
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }
func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

func (s *scanner) advance() {
	if s.eof() {
		return
	}
	if s.src[s.i] == '\n' {
		s.line++
		s.col = 1
	} else {
		s.col++
	}
	s.i++
}

func (s *scanner) record(path string, at Pos) {
	if _, ok := s.pos[path]; !ok {
		s.pos[path] = at
	}
	if plain := stripIndices(path); plain != path {
		if _, ok := s.pos[plain]; !ok {
			s.pos[plain] = at
		}
	}
}

// skipSpace skips blanks and comments; with newlines, also line ends.
func (s *scanner) skipSpace(newlines bool) {
	for !s.eof() {
		c := s.peek()
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			s.advance()
		case c == '\n' && newlines:
			s.advance()
		case c == '#':
			for !s.eof() && s.peek() != '\n' {
				s.advance()
			}
		default:
			return
		}
	}
}

func (s *scanner) document() {
	table := ""
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		if s.peek() == '[' {
			at := Pos{s.line, s.col}
			s.advance()
			array := s.peek() == '['
			if array {
				s.advance()
			}
			key := s.key()
			for !s.eof() && s.peek() != '\n' && s.peek() != '#' {
				s.advance() // closing brackets
			}
			if array {
				n := s.arrayTables[key]
				s.arrayTables[key] = n + 1
				table = key + "[" + strconv.Itoa(n) + "]"
			} else {
				table = key
			}
			s.record(table, at)
			continue
		}
		s.keyValue(table)
	}
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// key reads a dotted key (bare or quoted parts) and returns it joined by dots.
func (s *scanner) key() string {
	var parts []string
	for {
		s.skipSpace(false)
		var part strings.Builder
		switch s.peek() {
		case '"', '\'':
			q := s.peek()
			s.advance()
			for !s.eof() && s.peek() != q {
				if q == '"' && s.peek() == '\\' {
					s.advance()
				}
				part.WriteByte(s.peek())
				s.advance()
			}
			s.advance()
		default:
			for !s.eof() {
				c := s.peek()
				if c == '.' || c == '=' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '#' {
					break
				}
				part.WriteByte(c)
				s.advance()
			}
		}
		parts = append(parts, part.String())
		s.skipSpace(false)
		if s.peek() != '.' {
			return strings.Join(parts, ".")
		}
		s.advance()
	}
}

func (s *scanner) keyValue(prefix string) {
	s.skipSpace(false)
	at := Pos{s.line, s.col}
	path := join(prefix, s.key())
	s.record(path, at)
	s.skipSpace(false)
	if s.peek() == '=' {
		s.advance()
	}
	s.value(path)
}

func (s *scanner) value(path string) {
	s.skipSpace(false)
	switch s.peek() {
	case '{':
		s.advance()
		for {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.peek() == '}' {
				s.advance()
				return
			}
			if s.peek() == ',' {
				s.advance()
				continue
			}
			s.keyValue(path)
		}
	case '[':
		s.advance()
		n := 0
		for {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			switch s.peek() {
			case ']':
				s.advance()
				return
			case ',':
				s.advance()
				continue
			}
			elem := path + "[" + strconv.Itoa(n) + "]"
			s.record(elem, Pos{s.line, s.col})
			s.value(elem)
			n++
		}
	case '"', '\'':
		s.str()
	default:
		for !s.eof() {
			c := s.peek()
			if c == ',' || c == ']' || c == '}' || c == '\n' || c == '#' {
				return
			}
			s.advance()
		}
	}
}

func (s *scanner) str() {
	q := s.peek()
	if strings.HasPrefix(s.src[s.i:], strings.Repeat(string(q), 3)) {
		delim := strings.Repeat(string(q), 3)
		for k := 0; k < 3; k++ {
			s.advance()
		}
		for !s.eof() && !strings.HasPrefix(s.src[s.i:], delim) {
			if q == '"' && s.peek() == '\\' {
				s.advance()
			}
			s.advance()
		}
		for k := 0; k < 3; k++ {
			s.advance()
		}
		for !s.eof() && s.peek() == q { // up to two extra quotes belong to the string
			s.advance()
		}
		return
	}
	s.advance()
	for !s.eof() && s.peek() != q && s.peek() != '\n' {
		if q == '"' && s.peek() == '\\' {
			s.advance()
		}
		s.advance()
	}
	s.advance()
}
