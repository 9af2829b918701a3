package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The decoder walks the yaml.Node tree itself instead of calling yaml.Unmarshal on the
// struct: Unmarshal stops at the first type error, ignores unknown keys, accepts
// duplicate keys and loses line numbers, and a config with three mistakes should cost
// one edit-run cycle, not three.
type decoder struct {
	file     string
	src      *sources
	problems []*FieldError
	rejected []string            // paths whose value was rejected and kept its default
	fromSet  map[*yaml.Node]bool // value nodes that came from --set
}

var durationType = reflect.TypeOf(time.Duration(0))

// parse reads the document. It returns the top-level mapping, an empty mapping for an
// empty document, or nil after recording why the document cannot be used.
func (d *decoder) parse(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return yamlMapping()
		}
		d.syntax(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.add(&FieldError{File: d.file, Line: extra.Line,
			Msg: "found a second YAML document; a config is a single document"})
		return nil
	} else if !errors.Is(err, io.EOF) {
		d.syntax(err)
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if root.Kind == yaml.AliasNode {
		root = root.Alias
	}
	switch {
	case isNull(root):
		return yamlMapping()
	case root.Kind != yaml.MappingNode:
		d.add(&FieldError{File: d.file, Line: root.Line,
			Msg: "expected a mapping of sections (model, lora, dataset, ...) at the top level, got " + describe(root)})
		return nil
	}
	return root
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntax records a YAML syntax error, keeping the line yaml.v3 puts in its message.
func (d *decoder) syntax(err error) {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.add(&FieldError{File: d.file, Line: line, Msg: "invalid YAML: " + msg})
}

func (d *decoder) add(p *FieldError) { d.problems = append(d.problems, p) }

// reject records a problem with the value at path; the field keeps its default, and
// validation problems about that path are not reported on top.
func (d *decoder) reject(path string, format string, args ...any) {
	d.add(d.src.problem(path, format, args...))
	d.rejected = append(d.rejected, path)
}

// failed reports whether path, a parent or a child of it had its value rejected.
func (d *decoder) failed(path string) bool {
	for _, f := range d.rejected {
		if path == f || strings.HasPrefix(path, f+".") || strings.HasPrefix(path, f+"[") ||
			strings.HasPrefix(f, path+".") || strings.HasPrefix(f, path+"[") {
			return true
		}
	}
	return false
}

// decodeStruct overlays the mapping n onto the struct that ptr points to.
func (d *decoder) decodeStruct(n *yaml.Node, path string, ptr any) {
	d.decode(n, path, reflect.ValueOf(ptr).Elem(), false)
}

// note remembers where path was written.
func (d *decoder) note(path string, n *yaml.Node, inSet bool) {
	if inSet {
		d.src.paths[path] = origin{file: SetSource}
		return
	}
	d.src.paths[path] = origin{file: d.file, line: n.Line}
}

func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value, inSet bool) {
	if d.fromSet[n] {
		inSet = true
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	// null keeps the default, so `eval:` with nothing after it means "not set".
	if isNull(n) {
		return
	}
	switch {
	case v.Type() == durationType:
		s, ok := stringScalar(n)
		dur, err := time.ParseDuration(s)
		switch {
		case ok && n.ShortTag() == "!!str" && err == nil:
			v.SetInt(int64(dur))
		case n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float"):
			d.reject(path, "expected a duration with a unit such as \"30s\" or \"500ms\", got %s", describe(n))
		default:
			d.reject(path, "expected a duration such as \"30s\" or \"500ms\", got %s", describe(n))
		}
	case v.Kind() == reflect.Struct:
		d.decodeMapping(n, path, v, inSet)
	case v.Kind() == reflect.String:
		s, ok := stringScalar(n)
		if !ok {
			d.reject(path, "expected a string, got %s", describe(n))
			return
		}
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.reject(path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.reject(path, "expected an integer, got %s", describe(n))
			return
		}
		v.SetInt(int64(i))
	case v.Kind() == reflect.Float64:
		var f float64
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			d.reject(path, "expected a number, got %s", describe(n))
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.reject(path, "expected a finite number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		d.decodeStrings(n, path, v, inSet)
	default:
		// Only reachable if the schema gains a field type this walk does not know.
		panic(fmt.Sprintf("configs: no decoder for %s at %s", v.Type(), path))
	}
}

// decodeStrings reads a list of strings; a single string is a one-element list, as in
// PEFT's target_modules="all-linear".
func (d *decoder) decodeStrings(n *yaml.Node, path string, v reflect.Value, inSet bool) {
	if s, ok := stringScalar(n); ok {
		d.note(path+"[0]", n, inSet)
		v.Set(reflect.ValueOf([]string{s}))
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.reject(path, "expected a list of strings, got %s", describe(n))
		return
	}
	var out []string
	bad := false
	for i, e := range n.Content {
		ep := fmt.Sprintf("%s[%d]", path, i)
		d.note(ep, e, inSet || d.fromSet[e])
		if e.Kind == yaml.AliasNode {
			e = e.Alias
		}
		s, ok := stringScalar(e)
		if !ok {
			d.reject(ep, "expected a string, got %s", describe(e))
			bad = true
			continue
		}
		out = append(out, s)
	}
	if !bad {
		v.Set(reflect.ValueOf(out))
	}
}

// decodeMapping overlays a mapping onto a struct, field by field, by yaml tag.
func (d *decoder) decodeMapping(n *yaml.Node, path string, v reflect.Value, inSet bool) {
	if n.Kind != yaml.MappingNode {
		d.reject(path, "expected a mapping, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		kp := joinPath(path, key)
		keyInSet := inSet || d.fromSet[val]
		if k.Kind != yaml.ScalarNode {
			d.add(d.at(k, keyInSet, path, "expected a field name, got %s", describe(k)))
			continue
		}
		if first, dup := seen[key]; dup {
			d.add(d.at(k, keyInSet, kp, "duplicate key (first at line %d)", first))
			continue
		}
		seen[key] = k.Line
		if key == "<<" {
			d.add(d.at(k, keyInSet, kp, "merge keys are not supported; write the fields out"))
			continue
		}
		f, ok := fields[key]
		if !ok {
			d.add(d.at(k, keyInSet, kp, "unknown field%s", suggestion(v.Type(), path, key)))
			continue
		}
		d.note(kp, k, keyInSet)
		d.decode(val, kp, v.Field(f), inSet)
	}
}

// at builds a problem located at node k, for keys that may not be recorded yet.
func (d *decoder) at(k *yaml.Node, inSet bool, path, format string, args ...any) *FieldError {
	p := &FieldError{File: d.file, Line: k.Line, Path: path, Msg: fmt.Sprintf(format, args...)}
	if inSet {
		p.File, p.Line = SetSource, 0
	}
	return p
}

// fieldsOf maps the yaml tags of a struct type to field indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if tag := yamlName(t.Field(i)); tag != "" {
			m[tag] = i
		}
	}
	return m
}

// yamlName is a field's key, or "" for fields outside the schema (unexported ones).
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// stringScalar returns the text of a scalar usable as a string. Numbers and dates are
// taken as written (revision: 2024 is the text "2024"); booleans are refused because
// `yes`-style surprises are more likely than a field that means the text "true".
func stringScalar(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!timestamp":
		return n.Value, true
	}
	return "", false
}

// describe names what a node holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return describe(n.Alias)
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "nothing"
}

func yamlMapping() *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
}
