package conf

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong (or, with Warning, worth knowing) in a config file.
type Problem struct {
	File    string
	Pos     Pos
	Path    string // dotted key path, e.g. connections.graph.timeout
	Msg     string
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Pos.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Pos.Line)
		if p.Pos.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Pos.Col)
		}
	}
	b.WriteString(": ")
	if p.Warning {
		b.WriteString("warning: ")
	} else {
		b.WriteString("error: ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one file, errors and warnings.
type Problems []Problem

// HasErrors reports whether any problem is an error (not a warning).
func (ps Problems) HasErrors() bool {
	for _, p := range ps {
		if !p.Warning {
			return true
		}
	}
	return false
}

// Error lets Problems be returned as an error: one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Sorted orders problems by position (stable), in place, and returns them.
func (ps Problems) Sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Pos.Line != ps[j].Pos.Line {
			return ps[i].Pos.Line < ps[j].Pos.Line
		}
		return ps[i].Pos.Col < ps[j].Pos.Col
	})
	return ps
}

// MaxProblems is how many problems one config reports at most: a file of
// thousands of mistakes (or of garbage) is not worth listing in full, and
// stopping early keeps its verdict fast.
const MaxProblems = 1000

// capped keeps the first MaxProblems problems and says that more were left
// out (truncated: the checks stopped before finding them all).
func (ps Problems) capped(file string, truncated bool) Problems {
	if len(ps) <= MaxProblems && !truncated {
		return ps
	}
	msg := "more problems not shown: fix the ones above first"
	if !truncated {
		msg = fmt.Sprintf("%d %s", len(ps)-MaxProblems, msg)
	}
	return append(ps[:min(len(ps), MaxProblems):min(len(ps), MaxProblems)], Problem{File: file, Msg: msg})
}

// reporter collects problems and places them with the position index.
type reporter struct {
	file      string
	truncated bool // stopped looking after MaxProblems
	pos       positions
	list      Problems
}

func (r *reporter) errorf(path, format string, args ...any) {
	r.add(path, false, format, args...)
}

func (r *reporter) warnf(path, format string, args ...any) {
	r.add(path, true, format, args...)
}

func (r *reporter) add(path string, warning bool, format string, args ...any) {
	p, _ := r.pos.lookup(path)
	r.list = append(r.list, Problem{File: r.file, Pos: p, Path: path, Msg: fmt.Sprintf(format, args...), Warning: warning})
}
