package conf

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

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
		// The library's key path has no array indices: keep where's.
		plain := stripIndices(where)
		switch {
		case p.Path == "" || p.Path == plain:
			p.Path = where
		case strings.HasPrefix(p.Path, plain+"."):
			p.Path = where + p.Path[len(plain):]
		}
		if pos, ok := d.r.pos.lookup(p.Path); ok {
			p.Pos = pos
		}
		d.r.list = append(d.r.list, p)
		return false
	}
	return true
}

var unmarshalerType = reflect.TypeFor[toml.Unmarshaler]()

// value decodes prim into fv. Tables decode one key at a time and arrays of
// tables one element at a time, so that a wrong type drops only that key
// (the TOML library stops at the first mistake in a value it decodes whole)
// and the rest of the entry is still decoded and validated. ok is false when
// prim has the wrong shape for fv, which is then left unset.
func (d *decoder) value(prim toml.Primitive, fv reflect.Value, where string) (ok bool) {
	t := fv.Type()
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return d.decode(prim, fv.Addr().Interface(), where)
	}
	if t.Kind() == reflect.Pointer {
		elem := reflect.New(t.Elem())
		if d.value(prim, elem.Elem(), where) {
			fv.Set(elem)
			return true
		}
		return false
	}
	v := d.raw(prim)
	switch t.Kind() {
	case reflect.Struct:
		if !isTable(v) {
			d.r.errorf(where, "expected a table, got %s", typeWord(v))
			return false
		}
		var entries map[string]toml.Primitive
		if !d.decode(prim, &entries, where) {
			return false
		}
		for _, key := range sortedKeys(entries) {
			if f, ok := fieldFor(t, key); ok { // checkKeys reports unknown keys
				d.value(entries[key], fv.FieldByIndex(f.Index), where+"."+key)
			}
		}
		return true
	case reflect.Map:
		if !isTable(v) {
			d.r.errorf(where, "expected a table, got %s", typeWord(v))
			return false
		}
	case reflect.Slice:
		switch v.(type) {
		case []any, []map[string]any:
		default:
			d.r.errorf(where, "expected an array, got %s", typeWord(v))
			return false
		}
		if et := t.Elem(); et.Kind() == reflect.Struct && !reflect.PointerTo(et).Implements(unmarshalerType) {
			var elems []toml.Primitive
			if !d.decode(prim, &elems, where) {
				return false
			}
			s := reflect.MakeSlice(t, len(elems), len(elems))
			for i := range elems {
				d.value(elems[i], s.Index(i), fmt.Sprintf("%s[%d]", where, i))
			}
			fv.Set(s)
			return true
		}
	}
	return d.decode(prim, fv.Addr().Interface(), where)
}

// section decodes a top-level table such as [server].
func (d *decoder) section(prim toml.Primitive, name string, into any) bool {
	v := d.raw(prim)
	if v == nil {
		return false // not in the file
	}
	if !isTable(v) {
		d.r.errorf(name, "[%s] must be a table, not %s", name, typeWord(v))
		return false
	}
	return d.value(prim, reflect.ValueOf(into).Elem(), name)
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
		d.value(entries[name], reflect.ValueOf(&t).Elem(), where)
		out[name] = &t
	}
	return out
}
