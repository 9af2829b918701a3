package configs

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// docKey is the key cell of a reference table row in docs/configuration.md:
// | `path` | type | default | meaning |
var docKey = regexp.MustCompile("^`([a-z0-9_.]+)`$")

// The reference must list every field, and every default it gives as a literal must be
// the one Default() has, so the page cannot drift from the code.
func TestDocsMatchSchema(t *testing.T) {
	data, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatalf("read the reference: %v", err)
	}
	defaults := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		// Pipes inside cells are escaped as \| in the type column.
		cells := strings.Split(strings.ReplaceAll(line, `\|`, "/"), "|")
		if len(cells) != 6 {
			continue
		}
		if m := docKey.FindStringSubmatch(strings.TrimSpace(cells[1])); m != nil {
			defaults[m[1]] = strings.TrimSpace(cells[3])
		}
	}
	if len(defaults) == 0 {
		t.Fatal("no reference table rows found")
	}
	leaves := map[string]bool{}
	for _, p := range schemaPaths() {
		if v := fieldAt(reflect.ValueOf(Default()), p); v.Kind() != reflect.Struct || v.Type() == durationType {
			leaves[p] = true
		}
	}
	for p := range leaves {
		if _, ok := defaults[p]; !ok {
			t.Errorf("docs/configuration.md has no row for %s", p)
		}
	}
	compared := 0
	for p, def := range defaults {
		if !leaves[p] {
			t.Errorf("docs/configuration.md documents %s, which is not in the schema", p)
			continue
		}
		literal, ok := strings.CutPrefix(def, "`")
		literal, ok2 := strings.CutSuffix(literal, "`")
		if !ok || !ok2 || strings.Contains(literal, "`") || p == "scoring.data" || p == "output_dir" {
			continue // a description such as "the file name", or a derived default
		}
		// Decode the documented default through an override and compare with Default().
		c, err := Parse([]byte(base), "d.yaml", []string{p + "=" + literal})
		if err != nil {
			t.Errorf("%s: documented default %s does not parse: %v", p, def, err)
			continue
		}
		compared++
		got := fieldAt(reflect.ValueOf(*c), p).Interface()
		want := fieldAt(reflect.ValueOf(Default()), p).Interface()
		if !reflect.DeepEqual(got, want) && !(reflect.ValueOf(want).Kind() == reflect.Slice && reflect.ValueOf(want).Len() == 0 && reflect.ValueOf(got).Len() == 0) {
			t.Errorf("%s: docs say default %s, Default() has %v", p, def, want)
		}
	}
	// A change to the table layout must not turn this test into a no-op.
	if compared < 50 {
		t.Errorf("compared only %d documented defaults with Default(), want >= 50", compared)
	}
}

// fieldAt follows a dotted yaml path into a Config value.
func fieldAt(v reflect.Value, path string) reflect.Value {
	for _, k := range strings.Split(path, ".") {
		v = v.Field(fieldsOf(v.Type())[k])
	}
	return v
}
