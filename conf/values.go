package conf

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Duration is a TOML duration. Only strings with a unit ("30s", "5m") are
// accepted: an integer (`timeout = 30`) would mean nanoseconds to the TOML
// library, so it is recorded as a problem instead of being silently misread.
type Duration struct {
	D   time.Duration
	Set bool
	bad string // why the value was refused; reported by validation
}

// UnmarshalTOML implements toml.Unmarshaler. It never fails, so that decoding
// goes on and every problem in the file can be reported at once.
func (d *Duration) UnmarshalTOML(v any) error {
	d.Set = true
	switch x := v.(type) {
	case string:
		dur, err := time.ParseDuration(x)
		if err != nil {
			d.bad = fmt.Sprintf("%q is not a duration: use a number with a unit, like \"30s\" or \"5m\"", x)
			return nil
		}
		if dur < 0 {
			d.bad = fmt.Sprintf("%q is negative", x)
			return nil
		}
		d.D = dur
	case int64:
		d.bad = fmt.Sprintf("durations are strings with a unit: write \"%ds\", not the integer %d", x, x)
	case float64:
		d.bad = fmt.Sprintf("durations are strings with a unit, like \"30s\": got the number %v", x)
	default:
		d.bad = fmt.Sprintf("durations are strings with a unit, like \"30s\": got a %s", tomlTypeName(v))
	}
	return nil
}

// Or returns the duration, or def when it was not set.
func (d Duration) Or(def time.Duration) time.Duration {
	if !d.Set || d.bad != "" {
		return def
	}
	return d.D
}

// Secret is a secret-valued key: a literal string, or a reference
// { env = "NAME" }, { file = "/path" }, { vault = "name", id = "..." }.
// Its String form never shows a literal value.
type Secret struct {
	Literal string
	Env     string
	File    string
	Vault   string
	ID      string
	Set     bool

	isLiteral bool
	bad       string
}

// UnmarshalTOML implements toml.Unmarshaler; like Duration it never fails.
func (s *Secret) UnmarshalTOML(v any) error {
	s.Set = true
	switch x := v.(type) {
	case string:
		s.Literal, s.isLiteral = x, true
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			val, ok := x[k].(string)
			if !ok {
				s.bad = fmt.Sprintf("secret reference key %q must be a string", k)
				return nil
			}
			switch k {
			case "env":
				s.Env = val
			case "file":
				s.File = val
			case "vault":
				s.Vault = val
			case "id":
				s.ID = val
			}
		}
		n := 0
		for _, set := range []bool{s.Env != "", s.File != "", s.Vault != ""} {
			if set {
				n++
			}
		}
		switch {
		case n != 1:
			s.bad = `a secret reference takes exactly one of { env = "NAME" }, { file = "PATH" }, { vault = "NAME", id = "ID" }`
		case s.Vault != "" && s.ID == "":
			s.bad = `a vault secret reference needs an id: { vault = "NAME", id = "ID" }`
		case s.Vault == "" && s.ID != "":
			s.bad = `"id" is only used with "vault"`
		}
	default:
		s.bad = fmt.Sprintf("a secret is a string or a reference table like { env = \"NAME\" }: got a %s", tomlTypeName(v))
	}
	return nil
}

// IsLiteral reports whether the secret was written inline in the config.
func (s Secret) IsLiteral() bool { return s.isLiteral }

// String describes where the secret comes from, never its value.
func (s Secret) String() string {
	switch {
	case !s.Set:
		return "<unset>"
	case s.isLiteral:
		return "<literal>"
	case s.Env != "":
		return "env:" + s.Env
	case s.File != "":
		return "file:" + s.File
	case s.Vault != "":
		return "vault:" + s.Vault + "/" + s.ID
	}
	return "<invalid>"
}

// GoString keeps %#v from printing the literal.
func (s Secret) GoString() string { return "conf.Secret(" + s.String() + ")" }

func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case map[string]any:
		return "table"
	case []any, []map[string]any:
		return "array"
	case time.Time:
		return "datetime"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*")
}

// LiteralSecret returns a secret written inline (for programs and tests).
func LiteralSecret(v string) Secret { return Secret{Literal: v, Set: true, isLiteral: true} }
