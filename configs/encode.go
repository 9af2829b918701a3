package configs

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// YAML renders the effective configuration (every field, defaults and derived values
// included) as a document that Parse reads back to an equal Config; `herd config show`
// prints it. Keys come in schema order, lists in flow style, durations as "30s".
func (c *Config) YAML() ([]byte, error) {
	root := encode(reflect.ValueOf(*c))
	root.HeadComment = fmt.Sprintf("effective configuration of run %q", c.RunName)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("configs: render config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("configs: render config: %w", err)
	}
	return buf.Bytes(), nil
}

// encode is the inverse of decode: it builds the node tree of a schema value.
func encode(v reflect.Value) *yaml.Node {
	switch {
	case v.Type() == durationType:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: time.Duration(v.Int()).String()}
	case v.Kind() == reflect.Struct:
		m := yamlMapping()
		for i := 0; i < v.NumField(); i++ {
			name := yamlName(v.Type().Field(i))
			if name == "" {
				continue
			}
			m.Content = append(m.Content, keyNode(name), encode(v.Field(i)))
		}
		return m
	case v.Kind() == reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.String()}
	case v.Kind() == reflect.Slice:
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for i := 0; i < v.Len(); i++ {
			seq.Content = append(seq.Content, encode(v.Index(i)))
		}
		return seq
	}
	// Numbers and booleans are left untagged so they print plain; decode accepts an
	// integer-looking value for a float field, so 1 for epochs reads back as 1.0.
	var s string
	switch v.Kind() {
	case reflect.Bool:
		s = strconv.FormatBool(v.Bool())
	case reflect.Int:
		s = strconv.FormatInt(v.Int(), 10)
	case reflect.Float64:
		s = fmtFloat(v.Float())
	default:
		panic(fmt.Sprintf("configs: no encoder for %s", v.Type()))
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Value: s}
}
