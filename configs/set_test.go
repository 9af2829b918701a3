package configs

import (
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestSetOverrides(t *testing.T) {
	doc := base + "training:\n  lr: 1e-3\n"
	cases := []struct {
		name  string
		sets  []string
		check func(c *Config) bool
	}{
		{"float", []string{"training.lr=1e-4"}, func(c *Config) bool { return c.Training.LR == 1e-4 }},
		{"overrides the file", []string{"training.lr=5e-5"}, func(c *Config) bool { return c.Training.LR == 5e-5 }},
		{"later wins", []string{"training.lr=1", "training.lr=2"}, func(c *Config) bool { return c.Training.LR == 2 }},
		{"flow list", []string{"lora.target_modules=[q_proj,v_proj]"}, func(c *Config) bool {
			return slices.Equal(c.LoRA.TargetModules, []string{"q_proj", "v_proj"})
		}},
		{"duration", []string{"cluster.timeout=45s"}, func(c *Config) bool { return c.Cluster.Timeout == 45*time.Second }},
		{"new section", []string{"telemetry.log_level=debug"}, func(c *Config) bool { return c.Telemetry.LogLevel == "debug" }},
		{"deep new section", []string{"scoring.generation.stop=[\"###\"]"}, func(c *Config) bool {
			return slices.Equal(c.Scoring.Generation.Stop, []string{"###"})
		}},
		{"bool", []string{"dataset.packing=true"}, func(c *Config) bool { return c.Dataset.Packing }},
		{"whole section", []string{"lora={r: 4, alpha: 8}"}, func(c *Config) bool { return c.LoRA.R == 4 && c.LoRA.Alpha == 8 }},
		{"empty value is the empty string", []string{"dataset.eval=e.jsonl", "dataset.eval="}, func(c *Config) bool { return c.Dataset.Eval == "" }},
		{"null keeps the default", []string{"lora.r=null"}, func(c *Config) bool { return c.LoRA.R == 16 }},
		{"value with equals sign", []string{"telemetry.otlp_endpoint=http://h:4318/?a=b"}, func(c *Config) bool {
			return c.Telemetry.OTLPEndpoint == "http://h:4318/?a=b"
		}},
		{"spaces around path", []string{" lora.r =8"}, func(c *Config) bool { return c.LoRA.R == 8 }},
		{"number as string", []string{"model.revision=2024"}, func(c *Config) bool { return c.Model.Revision == "2024" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, doc, "s.yaml", tc.sets...)
			if !tc.check(c) {
				t.Errorf("override %v not applied: %+v", tc.sets, withoutSources(c))
			}
		})
	}
}

func TestSetThroughAlias(t *testing.T) {
	// An override inside an aliased mapping must not change the anchor's other uses.
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("a: &a {b: {c: 1}}\nx: *a\n"), &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	val := &yaml.Node{Kind: yaml.ScalarNode, Value: "2"}
	if msg := setNode(root, []string{"x", "b", "c"}, val); msg != "" {
		t.Fatal(msg)
	}
	var got map[string]map[string]map[string]int
	if err := root.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["a"]["b"]["c"] != 1 || got["x"]["b"]["c"] != 2 {
		t.Errorf("after setting x.b.c=2 through an alias: %v, want a.b.c 1 and x.b.c 2", got)
	}
}

func TestSetProblems(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		sets []string
		want string // the rendered problem
	}{
		{"unknown path", base, []string{"training.lrr=1"}, `--set training.lrr: unknown field (did you mean "lr"?)`},
		{"unknown section", base, []string{"trainig.lr=1"}, `--set trainig: unknown field (did you mean "training"?)`},
		{"path into a value", base, []string{"training.lr.max=1"}, `--set training.lr.max: training.lr is a single value and has no field "max"`},
		{"path into a duration", base, []string{"cluster.timeout.s=1"}, `--set cluster.timeout.s: cluster.timeout is a single value and has no field "s"`},
		{"list index", base, []string{"scoring.metrics[0]=f1"}, "--set scoring.metrics[0]: list entries cannot be set one by one; set the whole list, e.g. scoring.metrics=[a,b]"},
		{"empty key", base, []string{"training..lr=1"}, "--set training.: empty field name in path"},
		{"missing equals", base, []string{"training.lr"}, "--set training.lr: expected path=value, e.g. training.lr=1e-4"},
		{"empty path", base, []string{"=3"}, `--set: "=3": expected path=value, e.g. training.lr=1e-4`},
		{"bad type", base, []string{"training.lr=fast"}, `--set training.lr: expected a number, got "fast"`},
		{"bad duration", base, []string{"cluster.timeout=30"}, `--set cluster.timeout: expected a duration with a unit such as "30s" or "500ms", got 30`},
		{"bad yaml", base, []string{"lora.target_modules=[q_proj"}, `--set lora.target_modules: invalid value "[q_proj": line 1: did not find expected ',' or ']'`},
		{"out of range", base, []string{"lora.r=-4"}, "--set lora.r: must be >= 1, got -4"},
		{"bad list entry", base, []string{"lora.target_modules=[q_proj,foo]"}, `--set lora.target_modules[1]: must be one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, all-linear, got "foo"`},
		{"unknown key in a set mapping", base, []string{"lora={r: 4, rr: 8}"}, `--set lora.rr: unknown field (did you mean "r"?)`},
		{"into a scalar section", base + "lora: 5\n", []string{"lora.r=8"}, "--set lora.r: cannot set a field inside lora: it is 5 at line 6 of the file, not a mapping"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			probs := mustFail(t, tc.doc, "s.yaml", tc.sets...)
			var got []string
			for _, p := range probs {
				got = append(got, p.Error())
			}
			if !slices.Contains(got, tc.want) {
				t.Errorf("want %q among%s", tc.want, render(probs))
			}
			for _, p := range probs {
				if p.Error() == tc.want && (p.File != SetSource || p.Line != 0) {
					t.Errorf("override problem located at %s:%d, want %s", p.File, p.Line, SetSource)
				}
			}
		})
	}
}

func TestSetProblemsReportedWithFileProblems(t *testing.T) {
	// A broken file and broken overrides are reported in one go.
	_, err := Parse([]byte("lora: [\n"), "broken.yaml", []string{"training.lrr=1", "ok.x"})
	probs := Problems(err)
	if len(probs) != 3 || probs[0].File != "broken.yaml" || probs[1].File != SetSource || probs[2].File != SetSource {
		t.Errorf("want the syntax error then two override problems, got%s", render(probs))
	}
	if !strings.Contains(err.Error(), "--set training.lrr: unknown field") {
		t.Errorf("error does not name the bad override: %v", err)
	}
}
