package configs

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// applySets applies `--set path=value` overrides to the document before it is decoded,
// so that an override goes through exactly the checks a line in the file does. A value
// is read as YAML: a scalar (1e-4, 45s, true), or a flow list or mapping ([q_proj,v_proj]).
// An empty value is the empty string; null leaves the default, as in a file.
func (d *decoder) applySets(root *yaml.Node, sets []string) {
	for _, s := range sets {
		path, value, ok := strings.Cut(s, "=")
		path = strings.TrimSpace(path)
		if !ok {
			d.add(&FieldError{File: SetSource, Path: s, Msg: "expected path=value, e.g. training.lr=1e-4"})
			continue
		}
		if path == "" {
			d.add(&FieldError{File: SetSource, Msg: fmt.Sprintf("%q: expected path=value, e.g. training.lr=1e-4", s)})
			continue
		}
		keys := strings.Split(path, ".")
		if bad, msg := checkSetPath(keys); msg != "" {
			d.add(&FieldError{File: SetSource, Path: bad, Msg: msg})
			continue
		}
		val, err := parseSetValue(value)
		if err != nil {
			d.add(&FieldError{File: SetSource, Path: path, Msg: fmt.Sprintf("invalid value %q: %v", value, err)})
			continue
		}
		if msg := setNode(root, keys, val); msg != "" {
			d.add(&FieldError{File: SetSource, Path: path, Msg: msg})
			continue
		}
		if d.fromSet == nil {
			d.fromSet = map[*yaml.Node]bool{}
		}
		d.fromSet[val] = true
	}
}

// checkSetPath checks keys against the schema. On failure it returns the path up to the
// bad key and why it is bad.
func checkSetPath(keys []string) (string, string) {
	t := reflect.TypeOf(Config{})
	path := ""
	for _, k := range keys {
		if t.Kind() != reflect.Struct || t == durationType {
			return joinPath(path, k), fmt.Sprintf("%s is a single value and has no field %q", path, k)
		}
		f, ok := fieldsOf(t)[k]
		if !ok {
			if name, _, indexed := strings.Cut(k, "["); indexed {
				if _, known := fieldsOf(t)[name]; known {
					return joinPath(path, k), fmt.Sprintf("list entries cannot be set one by one; set the whole list, e.g. %s=[a,b]", joinPath(path, name))
				}
			}
			if k == "" {
				return joinPath(path, k), "empty field name in path"
			}
			return joinPath(path, k), "unknown field" + suggestion(t, path, k)
		}
		path = joinPath(path, k)
		t = t.Field(f).Type
	}
	return path, ""
}

// parseSetValue reads the value of an override as one YAML node.
func parseSetValue(value string) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(value), &doc); err != nil {
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}, nil
	}
	return doc.Content[0], nil
}

// setNode puts val at keys in the mapping root, creating sections that are missing. It
// returns why it could not.
func setNode(root *yaml.Node, keys []string, val *yaml.Node) string {
	cur := root
	for i, k := range keys {
		idx := -1
		for j := 0; j+1 < len(cur.Content); j += 2 {
			if cur.Content[j].Kind == yaml.ScalarNode && cur.Content[j].Value == k {
				idx = j + 1
				break
			}
		}
		if i == len(keys)-1 {
			if idx < 0 {
				cur.Content = append(cur.Content, keyNode(k), val)
			} else {
				cur.Content[idx] = val
			}
			return ""
		}
		if idx < 0 {
			child := yamlMapping()
			cur.Content = append(cur.Content, keyNode(k), child)
			cur = child
			continue
		}
		child := cur.Content[idx]
		if child.Kind == yaml.AliasNode {
			child = child.Alias
		}
		if isNull(child) {
			child = yamlMapping()
		}
		if child.Kind != yaml.MappingNode {
			return fmt.Sprintf("cannot set a field inside %s: it is %s at line %d of the file, not a mapping",
				strings.Join(keys[:i+1], "."), describe(child), child.Line)
		}
		// Edit a copy of each mapping on the way down: a mapping reached through an
		// anchor is shared, and the override must change only this place. Copying one
		// level at a time keeps the cost linear even for nested aliases.
		cp := *child
		cp.Anchor = ""
		cp.Content = slices.Clone(child.Content)
		cur.Content[idx] = &cp
		cur = &cp
	}
	return ""
}

func keyNode(k string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}
}
