package conf

import "github.com/BurntSushi/toml"

// decoder decodes the sections of a parsed config one entry at a time, so
// that a mistake in one entry does not hide the problems of the others.
type decoder struct {
	md   *toml.MetaData
	r    *reporter
	path string // the config file, for problems
}

// rawValue captures a TOML value as the parser produced it: map[string]any
// for a table, []map[string]any or []any for an array, or a scalar.
type rawValue struct{ v any }

func (rv *rawValue) UnmarshalTOML(v any) error { rv.v = v; return nil }

func (d *decoder) raw(prim toml.Primitive) any {
	var rv rawValue
	_ = d.md.PrimitiveDecode(prim, &rv) // never fails
	return rv.v
}

func isTable(v any) bool { _, ok := v.(map[string]any); return ok }

// typeWord names the TOML type of v with an article, for messages.
func typeWord(v any) string {
	switch v.(type) {
	case []map[string]any:
		return "an array of tables"
	}
	w := tomlTypeName(v)
	switch w[0] {
	case 'a', 'e', 'i', 'o', 'u':
		return "an " + w
	}
	return "a " + w
}

// decode decodes prim into into, reporting a library error at where.
func (d *decoder) decode(prim toml.Primitive, into any, where string) bool {
	if err := d.md.PrimitiveDecode(prim, into); err != nil {
		p := decodeProblem(d.path, err)
		if p.Path == "" {
			p.Path = where
		}
		if p.Pos.Line == 0 {
			p.Pos, _ = d.r.pos.lookup(where)
		}
		d.r.list = append(d.r.list, p)
		return false
	}
	return true
}

// section decodes a top-level table such as [server].
func (d *decoder) section(prim toml.Primitive, name string, into any) bool {
	if v := d.raw(prim); v != nil && !isTable(v) {
		d.r.errorf(name, "[%s] must be a table, not %s", name, typeWord(v))
		return false
	}
	return d.decode(prim, into, name)
}

// named decodes a section of named entries such as [connections.NAME]. The
// TOML library would decode an array there as an empty map, so the shape is
// checked first: an array is an error, never "0 connections".
func named[T any](d *decoder, prim toml.Primitive, section string) map[string]*T {
	out := map[string]*T{}
	v := d.raw(prim)
	if v == nil {
		return out
	}
	if !isTable(v) {
		d.r.errorf(section, "%s must be a table of named %s: [%s.NAME], not %s", section, section, section, typeWord(v))
		return out
	}
	var entries map[string]toml.Primitive
	if !d.decode(prim, &entries, section) {
		return out
	}
	for _, name := range sortedKeys(entries) {
		where := section + "." + name
		if v := d.raw(entries[name]); !isTable(v) {
			d.r.errorf(where, "%s must be a table: [%s], not %s", where, where, typeWord(v))
			continue
		}
		var t T
		if d.decode(entries[name], &t, where) {
			out[name] = &t
		}
	}
	return out
}
