package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// rawConfig is the first decoding pass: every table entry stays a Primitive so
// that each is decoded on its own and one wrong type does not hide the problems
// in the others.
type rawConfig struct {
	Server      toml.Primitive `toml:"server"`
	Log         toml.Primitive `toml:"log"`
	Egress      toml.Primitive `toml:"egress"`
	Intercept   toml.Primitive `toml:"intercept"`
	Vaults      toml.Primitive `toml:"vaults"`
	Credentials toml.Primitive `toml:"credentials"`
	Profiles    toml.Primitive `toml:"profiles"`
	Clusters    toml.Primitive `toml:"clusters"`
	Connections toml.Primitive `toml:"connections"`
	Cache       toml.Primitive `toml:"cache"`
	Broker      toml.Primitive `toml:"broker"`
}

// Load reads, decodes and validates the config file at path. The config is
// usable only when the returned problems hold no error (warnings are fine).
func Load(path string) (*Config, Problems) {
	data, err := readLimited(path)
	if err != nil {
		msg := "cannot read the config file"
		if errors.Is(err, os.ErrNotExist) {
			msg = "the config file does not exist (set it with --config)"
		}
		return nil, Problems{{File: path, Msg: msg}}
	}
	return Parse(path, data)
}

// offsetPos is the line and column of a byte offset in data.
func offsetPos(data []byte, off int) Pos {
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	return Pos{Line: line, Col: off - (bytes.LastIndexByte(before, '\n') + 1) + 1}
}

// readLimited reads at most MaxConfigSize+1 bytes of the file, enough for
// Parse to tell that it is too large.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
}

// Parse decodes and validates config text; path names it in problems and
// anchors relative file paths. Text over MaxConfigSize or nested deeper than
// MaxNesting is refused; a leading UTF-8 byte order mark is skipped.
func Parse(path string, data []byte) (*Config, Problems) {
	data, p := precheck(path, data)
	if p != nil {
		return nil, Problems{*p}
	}
	r := &reporter{file: path}
	var raw rawConfig
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		p := decodeProblem(path, err)
		var pe toml.ParseError
		if p.Pos.Line == 0 && errors.As(err, &pe) && pe.Position.Start >= 0 && pe.Position.Start <= len(data) {
			// The library leaves the line unset for some errors at the end
			// of the text (an escape cut short); its byte offset is right.
			p.Pos = offsetPos(data, pe.Position.Start)
		}
		r.list = append(r.list, p)
		return nil, r.list
	}
	pos, perr := indexPositions(data)
	if perr != nil {
		// The decoder accepted text the position parser refuses: report it
		// rather than guess positions.
		perr.File = path
		perr.Msg = "TOML syntax: " + strings.TrimPrefix(perr.Msg, "toml: ")
		r.list = append(r.list, *perr)
		return nil, r.list
	}
	r.pos = pos
	checkKeys(md, r)

	cfg := &Config{Path: path, Dir: filepath.Dir(path), pos: pos}
	d := &decoder{md: &md, r: r, path: path}
	d.section(raw.Server, "server", &cfg.Server)
	d.section(raw.Log, "log", &cfg.Log)
	d.section(raw.Egress, "egress", &cfg.Egress)
	if md.IsDefined("intercept") {
		cfg.Intercept = &Intercept{}
		d.section(raw.Intercept, "intercept", cfg.Intercept)
	}
	cfg.Vaults = named[Vault](d, raw.Vaults, "vaults")
	cfg.Credentials = named[Credential](d, raw.Credentials, "credentials")
	cfg.Profiles = named[Profile](d, raw.Profiles, "profiles")
	cfg.Clusters = named[Cluster](d, raw.Clusters, "clusters")
	cfg.Connections = named[Connection](d, raw.Connections, "connections")
	d.section(raw.Cache, "cache", &cfg.Cache)
	if md.IsDefined("broker") {
		cfg.Broker = &Broker{}
		d.section(raw.Broker, "broker", cfg.Broker)
	}

	v := &validator{cfg: cfg, md: md, r: r}
	v.run()
	return cfg, r.list.Sorted().capped(path, r.truncated)
}

var typeErrRe = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)
var incompatRe = regexp.MustCompile(`incompatible types: TOML value has type (\S+); destination has type (.+)$`)

// decodeProblem turns a TOML library error into a positioned problem.
func decodeProblem(path string, err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return Problem{File: path, Pos: Pos{pe.Position.Line, pe.Position.Col}, Path: pe.LastKey, Msg: strings.TrimPrefix(pe.Message, "toml: ")}
	}
	msg := err.Error()
	if m := typeErrRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		detail := m[3]
		if im := incompatRe.FindStringSubmatch(detail); im != nil {
			detail = fmt.Sprintf("expected %s, got %s", goTypeWord(im[2]), tomlWord(im[1]))
		}
		return Problem{File: path, Pos: Pos{Line: line}, Path: m[2], Msg: detail}
	}
	return Problem{File: path, Msg: strings.TrimPrefix(msg, "toml: ")}
}

func tomlWord(t string) string {
	switch t {
	case "int64":
		return "an integer"
	case "float64":
		return "a float"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "map[string]interface {}":
		return "a table"
	case "[]interface {}", "[]map[string]interface {}":
		return "an array"
	}
	return t
}

func goTypeWord(t string) string {
	switch {
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"):
		return "an integer"
	case t == "bool":
		return "a boolean"
	case strings.HasPrefix(t, "[]") || strings.HasPrefix(t, "slice"):
		return "an array"
	case strings.HasPrefix(t, "map") || strings.Contains(t, "struct") || strings.HasPrefix(t, "*"):
		return "a table"
	}
	return t
}

var (
	secretType   = reflect.TypeOf(Secret{})
	durationType = reflect.TypeOf(Duration{})
	secretKeys   = []string{"env", "file", "vault", "id"}
)

// checkKeys reports unknown keys and keys that differ from the schema only in
// case (the TOML library would match those silently).
func checkKeys(md toml.MetaData, r *reporter) {
	root := reflect.TypeOf(Config{})
	for _, key := range md.Keys() {
		if len(r.list) >= MaxProblems {
			r.truncated = true // the rest would not be shown
			return
		}
		path := strings.Join(key, ".") // Key.String() quotes parts; the position index does not
		t := root
		for i := 0; i < len(key); {
			for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
				t = t.Elem()
			}
			last := i == len(key)-1
			part := key[i]
			switch {
			case t == secretType:
				if last && !contains(secretKeys, part) {
					r.errorf(path, "unknown key %q in a secret reference (use env, file, or vault with id)", part)
				}
				i = len(key)
			case t == durationType:
				i = len(key)
			case t.Kind() == reflect.Struct:
				f, ok := fieldFor(t, part)
				if !ok {
					if last {
						reportUnknown(r, path, part, t)
					}
					i = len(key)
					continue
				}
				if last && f.Tag.Get("toml") != part {
					r.errorf(path, "key %q differs only in case from %q: keys are case-sensitive", part, f.Tag.Get("toml"))
				}
				t = f.Type
				i++
			case t.Kind() == reflect.Map:
				t = t.Elem()
				i++
			default:
				i = len(key)
			}
		}
	}
}

func fieldFor(t reflect.Type, name string) (reflect.StructField, bool) {
	var ci reflect.StructField
	found := false
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		if tag == name {
			return f, true
		}
		if strings.EqualFold(tag, name) {
			ci, found = f, true
		}
	}
	return ci, found
}

func reportUnknown(r *reporter, path, part string, t reflect.Type) {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	sort.Strings(names)
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(part, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best != "" {
		r.errorf(path, "unknown key %q (did you mean %q?)", part, best)
		return
	}
	r.errorf(path, "unknown key %q (known keys here: %s)", part, strings.Join(names, ", "))
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
