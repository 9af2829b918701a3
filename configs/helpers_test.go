package configs

import (
	"strings"
	"testing"
)

// base is the smallest valid config: the two fields without defaults. Tests that write
// into the model or dataset sections use baseSets instead, so their YAML has no duplicate
// sections.
const base = `
model:
  path: data/models/tiny
dataset:
  train: data/tiny/train.jsonl
`

var baseSets = []string{"model.path=data/models/tiny", "dataset.train=data/tiny/train.jsonl"}

// mustParse parses a config that must be valid.
func mustParse(t *testing.T, doc, name string, sets ...string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc), name, sets)
	if err != nil {
		t.Fatalf("Parse(%s): unexpected error:\n%v", name, err)
	}
	return c
}

// mustFail parses a config that must be rejected and returns its problems.
func mustFail(t *testing.T, doc, name string, sets ...string) []*FieldError {
	t.Helper()
	c, err := Parse([]byte(doc), name, sets)
	if err == nil {
		t.Fatalf("Parse(%s): expected an error, got config %+v", name, c)
	}
	if c != nil {
		t.Errorf("Parse(%s): returned a config together with an error", name)
	}
	probs := Problems(err)
	if len(probs) == 0 {
		t.Fatalf("Parse(%s): error holds no *FieldError: %v", name, err)
	}
	return probs
}

// findProblem returns the problem at path whose message contains msg.
func findProblem(probs []*FieldError, path, msg string) *FieldError {
	for _, p := range probs {
		if p.Path == path && strings.Contains(p.Msg, msg) {
			return p
		}
	}
	return nil
}

func render(probs []*FieldError) string {
	var b strings.Builder
	for _, p := range probs {
		b.WriteString("\n\t" + p.Error())
	}
	return b.String()
}

// withoutSources drops the line bookkeeping so configs compare by their fields.
func withoutSources(c *Config) Config {
	cp := *c
	cp.src = nil
	return cp
}
