package config

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wssproxy/wssproxy/internal/suggest"
)

// The file is parsed into maps (map[string]any and what the TOML parser
// makes of values: string, int64, float64, bool, time.Time, []any,
// []map[string]any), which cannot fail on types, and then converted into
// File by its toml tags here. A value of the wrong type, a duration
// without a unit, an unknown key or a [table] written for an [[array]] is
// one error naming its key; the field keeps its zero value and decoding
// goes on, so every mistake in a file is reported at once.

// decoder converts one file's maps into a File.
type decoder struct {
	errs    []error
	failed  map[string]bool // keys whose values did not decode
	singles []string        // arrays written as one [table], decoded as element 1
	// meant holds, for each unknown key with a near miss, the key it was
	// meant to be ("route[2].backend" for "route[2].bakend"): that key's
	// absence is the same mistake, and is not reported again.
	meant map[string]bool
}

func (d *decoder) fail(key, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	d.failed[key] = true
}

var durationType = reflect.TypeFor[time.Duration]()

// table decodes the TOML table m into the struct dst, whose key is key
// ("" for the top level).
func (d *decoder) table(key string, m map[string]any, dst reflect.Value) {
	fields := fieldsOf(dst.Type())
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		sub := join(key, name)
		f, ok := fields[name]
		if !ok {
			// Not a failed value: the key is simply not there, and what
			// its absence causes is reported too.
			msg := "unknown key"
			if near := nearest(dst.Type(), name); near != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", near)
				d.meant[join(key, near)] = true
			}
			d.errs = append(d.errs, &FieldError{Key: sub, Msg: msg})
			continue
		}
		d.value(sub, m[name], dst.FieldByIndex(f))
	}
}

// value decodes the TOML value v into dst, whose key is key.
func (d *decoder) value(key string, v any, dst reflect.Value) {
	t := dst.Type()
	switch {
	case t == durationType:
		if dur, ok := d.duration(key, v); ok {
			dst.SetInt(int64(dur))
		}
		return
	case t.Kind() == reflect.Pointer:
		p := reflect.New(t.Elem())
		before := len(d.errs)
		d.value(key, v, p.Elem())
		if len(d.errs) == before {
			dst.Set(p)
		}
		return
	}
	switch t.Kind() {
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.fail(key, "must be a string (in quotes), got %s", describe(v))
			return
		}
		dst.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.fail(key, "must be true or false (no quotes), got %s", describe(v))
			return
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(int64)
		switch {
		case !ok:
			d.fail(key, "must be a whole number (no quotes), got %s", describe(v))
		case dst.OverflowInt(n):
			d.fail(key, "%d is too large", n)
		default:
			dst.SetInt(n)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(int64)
		switch {
		case !ok:
			d.fail(key, "must be a whole number (no quotes), got %s", describe(v))
		case n < 0:
			d.fail(key, "must not be negative, got %d", n)
		case dst.OverflowUint(uint64(n)):
			d.fail(key, "%d is too large", n)
		default:
			dst.SetUint(uint64(n))
		}
	case reflect.Float64:
		switch n := v.(type) {
		case int64:
			dst.SetFloat(float64(n))
		case float64:
			dst.SetFloat(n)
		default:
			d.fail(key, "must be a number (no quotes), got %s", describe(v))
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.fail(key, "must be a table, like [%s], got %s", key, describe(v))
			return
		}
		d.table(key, m, dst)
	case reflect.Map: // set_headers: a table of strings
		m, ok := v.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			d.fail(key, `must be a table of strings, like { Name = "value" }, got %s`, describe(v))
			return
		}
		out := reflect.MakeMapWithSize(t, len(m))
		for name, e := range m {
			before := len(d.errs)
			ev := reflect.New(t.Elem()).Elem()
			d.value(join(key, name), e, ev)
			if len(d.errs) == before {
				out.SetMapIndex(reflect.ValueOf(name).Convert(t.Key()), ev)
			}
		}
		dst.Set(out)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			d.tables(key, v, dst)
			return
		}
		list, ok := v.([]any)
		if !ok {
			d.fail(key, `must be an array, like ["a", "b"], got %s`, describe(v))
			return
		}
		out := reflect.MakeSlice(t, len(list), len(list))
		before := len(d.errs)
		for i, e := range list {
			if t.Elem().Kind() != reflect.String {
				d.value(key, e, out.Index(i)) // the array's line and key
				continue
			}
			s, ok := e.(string)
			if !ok {
				d.fail(key, "element %d must be a string (in quotes), got %s", i+1, describe(e))
				continue
			}
			out.Index(i).SetString(s)
		}
		if len(d.errs) == before {
			dst.Set(out)
		}
	default:
		d.fail(key, "cannot be set in the file") // not a configuration key's type
	}
}

// tables decodes an array of tables ([[route]]) into the slice dst.
func (d *decoder) tables(key string, v any, dst reflect.Value) {
	var list []map[string]any
	switch v := v.(type) {
	case []map[string]any:
		list = v
	case []any: // route = [{ … }, { … }]
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				d.fail(key, "element %d must be a table, got %s", i+1, describe(e))
				return
			}
			list = append(list, m)
		}
	case map[string]any:
		// [route] for [[route]]: say so, and check the table as the one
		// element it was meant to be (so what is in it is checked too: it
		// is not a failed value).
		d.errs = append(d.errs, &FieldError{Key: key,
			Msg: fmt.Sprintf("[%s] is a single table; write [[%s]] (double brackets), once for each", key, key)})
		d.singles = append(d.singles, key)
		list = []map[string]any{v}
	default:
		d.fail(key, "must be an array of tables, [[%s]], got %s", key, describe(v))
		return
	}
	out := reflect.MakeSlice(dst.Type(), len(list), len(list))
	for i, m := range list {
		d.table(indexKey(key, i), m, out.Index(i))
	}
	dst.Set(out)
}

// duration decodes a duration: a string with a unit, as time.ParseDuration
// reads it.
func (d *decoder) duration(key string, v any) (time.Duration, bool) {
	switch v := v.(type) {
	case string:
		dur, err := time.ParseDuration(v)
		if err == nil {
			return dur, true
		}
		if _, numErr := strconv.ParseFloat(v, 64); numErr == nil {
			d.fail(key, `%q has no unit: write e.g. "%ss" for seconds or "%sms" for milliseconds`, v, v, v)
		} else {
			d.fail(key, `invalid duration %q: write a number and a unit, e.g. "10s", "500ms" or "1m30s"`, v)
		}
	case int64, float64:
		d.fail(key, `%v has no unit: durations are strings, e.g. "%vs" for seconds or "%vms" for milliseconds`, v, v, v)
	default:
		d.fail(key, `must be a duration, like "10s", got %s`, describe(v))
	}
	return 0, false
}

// describe names a TOML value's type, and shows it when it is short.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return fmt.Sprintf("the number %v", v)
		}
		return "the number " + strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return fmt.Sprintf("%v", v)
	case time.Time:
		return "a date/time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

func join(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

func indexKey(key string, i int) string { return fmt.Sprintf("%s[%d]", key, i+1) }

// fieldsOf maps the TOML keys of struct type t to their fields' indexes,
// following embedded structs; an outer struct's key shadows an inner one.
func fieldsOf(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	var walk func(t reflect.Type, index []int, depth int)
	depths := map[string]int{}
	walk = func(t reflect.Type, index []int, depth int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			idx := append(slices.Clone(index), i)
			switch {
			case tag == "-" || !f.IsExported():
			case f.Anonymous && tag == "":
				walk(f.Type, idx, depth+1)
			case tag != "":
				if d, ok := depths[tag]; !ok || depth < d {
					out[tag], depths[tag] = idx, depth
				}
			}
		}
	}
	walk(t, nil, 0)
	return out
}

// keysOf lists the TOML keys of a struct type, sorted.
func keysOf(t reflect.Type) []string {
	var keys []string
	for k := range fieldsOf(t) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// nearest returns the key of struct type t that name is a near miss of
// ("backend" for "bakend" or "Backend"), or "".
func nearest(t reflect.Type, name string) string {
	return suggest.Nearest(keysOf(t), name)
}

// Keys lists every configuration key, dotted, with "route." for the keys
// of a [[route]] and "tls.certificate." for those of a [[tls.certificate]]:
// what the README's reference and the full example must cover.
func Keys() []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		fields := fieldsOf(t)
		for _, k := range keysOf(t) {
			ft := t.FieldByIndex(fields[k]).Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(prefix+k+".", ft)
				continue
			}
			out = append(out, prefix+k)
		}
	}
	walk("", reflect.TypeFor[File]())
	return out
}
