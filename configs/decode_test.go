package configs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The headline promise: one run of the config reports every mistake, each with file,
// line and field path.
func TestThreeMistakesReportedTogether(t *testing.T) {
	doc := `model:
  path: data/models/tiny
lora:
  r: sixteen
dataset:
  train: data/tiny/train.jsonl
training:
  lr: 1e-3
  lrr: 2e-3
  warmup_ratio: 1.5
`
	_, err := Parse([]byte(doc), "tiny.yaml", nil)
	want := []string{
		`tiny.yaml:4: lora.r: expected an integer, got "sixteen"`,
		`tiny.yaml:9: training.lrr: unknown field (did you mean "lr"?)`,
		`tiny.yaml:10: training.warmup_ratio: must be in [0, 1), got 1.5`,
	}
	if err == nil {
		t.Fatal("expected three problems, got none")
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	probs := Problems(err)
	if len(probs) != 3 {
		t.Fatalf("Problems() = %d, want 3", len(probs))
	}
	for i, wantLine := range []int{4, 9, 10} {
		if probs[i].File != "tiny.yaml" || probs[i].Line != wantLine {
			t.Errorf("problem %d at %s:%d, want tiny.yaml:%d", i, probs[i].File, probs[i].Line, wantLine)
		}
	}
}

func TestTypeErrors(t *testing.T) {
	cases := []struct {
		name, doc, path, msg string
	}{
		{"int from word", "lora:\n  r: sixteen\n", "lora.r", `expected an integer, got "sixteen"`},
		{"int from float", "lora:\n  r: 16.5\n", "lora.r", "expected an integer, got 16.5"},
		{"int from list", "lora:\n  r: [1]\n", "lora.r", "expected an integer, got a list"},
		{"int overflow", "training:\n  seed: 99999999999999999999999\n", "training.seed", "expected an integer"},
		{"float from word", "training:\n  lr: fast\n", "training.lr", `expected a number, got "fast"`},
		{"float from bool", "training:\n  lr: true\n", "training.lr", "expected a number, got true"},
		{"float infinite", "training:\n  lr: .inf\n", "training.lr", "expected a finite number, got .inf"},
		{"float nan", "lora:\n  alpha: .nan\n", "lora.alpha", "expected a finite number"},
		{"bool from yes", "dataset:\n  packing: yes\n", "dataset.packing", `expected true or false, got "yes"`},
		{"bool from int", "model:\n  gradient_checkpointing: 1\n", "model.gradient_checkpointing", "expected true or false, got 1"},
		{"string from bool", "dataset:\n  eval: true\n", "dataset.eval", "expected a string, got true"},
		{"string from mapping", "model:\n  dtype: {a: b}\n", "model.dtype", "expected a string, got a mapping"},
		{"list from mapping", "lora:\n  target_modules: {q_proj: true}\n", "lora.target_modules", "expected a list of strings, got a mapping"},
		{"list element", "scoring:\n  metrics: [loss, [f1]]\n", "scoring.metrics[1]", "expected a string, got a list"},
		{"section from scalar", "training: fast\n", "training", `expected a mapping, got "fast"`},
		{"section from list", "cluster: [1, 2]\n", "cluster", "expected a mapping, got a list"},
		{"nested section", "dataset:\n  fields: text\n", "dataset.fields", `expected a mapping, got "text"`},
		{"duration bare number", "cluster:\n  timeout: 30\n", "cluster.timeout", `expected a duration with a unit such as "30s"`},
		{"duration word", "cluster:\n  timeout: soon\n", "cluster.timeout", `expected a duration such as "30s" or "500ms", got "soon"`},
		{"duration bool", "cluster:\n  heartbeat: false\n", "cluster.heartbeat", "got false"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			probs := mustFail(t, tc.doc, "c.yaml", baseSets...)
			if len(probs) != 1 || probs[0].Path != tc.path || !strings.Contains(probs[0].Msg, tc.msg) {
				t.Fatalf("want exactly one problem at %s containing %q, got%s", tc.path, tc.msg, render(probs))
			}
			if want := strings.Count(tc.doc, "\n"); probs[0].Line != want || probs[0].File != "c.yaml" {
				t.Errorf("problem at %s:%d, want c.yaml:%d (the value's key)", probs[0].File, probs[0].Line, want)
			}
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	cases := []struct {
		name, doc, path, msg string
	}{
		{"typo top level", "modle:\n  path: x\n", "modle", `unknown field (did you mean "model"?)`},
		{"typo nested", "training:\n  lrr: 1\n", "training.lrr", `(did you mean "lr"?)`},
		{"typo deep", "dataset:\n  fields:\n    txt: body\n", "dataset.fields.txt", `(did you mean "text"?)`},
		{"typo generation", "scoring:\n  generation:\n    top_pp: 0.5\n", "scoring.generation.top_pp", `(did you mean "top_p"?)`},
		{"camel case", "training:\n  microBatchSize: 2\n", "training.microBatchSize", `(did you mean "micro_batch_size"?)`},
		{"dashes", "training:\n  grad-accum: 2\n", "training.grad-accum", `(did you mean "grad_accum"?)`},
		{"hugging face name", "training:\n  learning_rate: 1e-4\n", "training.learning_rate", `(did you mean "lr"?)`},
		{"hugging face name in another section", "lora:\n  num_train_epochs: 3\n", "lora.num_train_epochs", `(did you mean "training.epochs"?)`},
		{"right key wrong section", "lr: 1e-4\n", "lr", `(did you mean "training.lr"?)`},
		{"right key wrong nested section", "training:\n  max_new_tokens: 5\n", "training.max_new_tokens", `(did you mean "scoring.generation.max_new_tokens"?)`},
		{"nothing close", "training:\n  zebra: 1\n", "training.zebra", "unknown field"},
		{"merge key", "base: &b {r: 4}\nlora:\n  <<: *b\n", "lora.<<", "merge keys are not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			probs := mustFail(t, tc.doc, "c.yaml", baseSets...)
			p := findProblem(probs, tc.path, tc.msg)
			if p == nil {
				t.Fatalf("want a problem at %s containing %q, got%s", tc.path, tc.msg, render(probs))
			}
			if p.Line == 0 {
				t.Errorf("unknown key without a line: %s", p)
			}
		})
	}
	// No suggestion when nothing is close: a wrong guess is worse than none.
	probs := mustFail(t, "training:\n  zebra: 1\n", "c.yaml", baseSets...)
	if strings.Contains(probs[0].Msg, "did you mean") {
		t.Errorf("suggestion for a key nothing resembles: %s", probs[0])
	}
}

func TestDuplicateKeys(t *testing.T) {
	cases := []struct {
		name, doc, path string
		line, first     int
	}{
		{"top level", "model:\n  path: a\nmodel:\n  path: b\ndataset:\n  train: t\n", "model", 3, 1},
		{"nested", base + "training:\n  lr: 1e-3\n  seed: 1\n  lr: 2e-3\n", "training.lr", 9, 7},
		{"deep", base + "scoring:\n  generation:\n    top_k: 1\n    top_k: 2\n", "scoring.generation.top_k", 9, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			probs := mustFail(t, tc.doc, "d.yaml")
			p := findProblem(probs, tc.path, "duplicate key")
			if p == nil {
				t.Fatalf("no duplicate-key problem at %s:%s", tc.path, render(probs))
			}
			if p.Line != tc.line || !strings.Contains(p.Msg, fmt.Sprintf("first at line %d", tc.first)) {
				t.Errorf("got %s, want line %d naming first at line %d", p, tc.line, tc.first)
			}
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		line      int
		msg       string
	}{
		// yaml.v3 reports where the flow list started, which is what it knows.
		{"unclosed flow list", "lora:\n  target_modules: [q_proj\n", 1, "did not find expected ',' or ']'"},
		{"tab indentation", "lora:\n\tr: 8\n", 2, "invalid YAML"},
		{"bad indentation", "lora:\n  r: 8\n   alpha: 3\n", 3, "invalid YAML"},
		{"unknown anchor", "lora: *nope\n", 0, "unknown anchor 'nope'"},
		{"second document", base + "---\nlora: {}\n", 6, "second YAML document"},
		{"top level list", "- model\n- lora\n", 1, "expected a mapping of sections"},
		{"top level scalar", "hello\n", 1, "expected a mapping of sections"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			probs := mustFail(t, tc.doc, "s.yaml")
			if len(probs) != 1 {
				t.Fatalf("want one problem, got%s", render(probs))
			}
			p := probs[0]
			if p.File != "s.yaml" || p.Line != tc.line || !strings.Contains(p.Msg, tc.msg) {
				t.Errorf("got %q, want s.yaml:%d with %q", p, tc.line, tc.msg)
			}
		})
	}
}

func TestEmptyDocumentNeedsRequiredFields(t *testing.T) {
	for _, doc := range []string{"", "# only a comment\n", "~\n"} {
		probs := mustFail(t, doc, "e.yaml")
		if len(probs) != 2 || findProblem(probs, "model.path", "missing") == nil ||
			findProblem(probs, "dataset.train", "missing") == nil {
			t.Errorf("%q: want missing model.path and dataset.train, got%s", doc, render(probs))
		}
		if probs[0].Line != 0 || probs[0].Error() != "e.yaml: model.path: missing: expected a local Hugging Face model directory or a hub id ORG/NAME" {
			t.Errorf("default-located problem renders as %q", probs[0])
		}
	}
}

func TestDurations(t *testing.T) {
	cases := []struct {
		doc       string
		timeout   time.Duration
		heartbeat time.Duration
	}{
		{"cluster:\n  timeout: 45s\n", 45 * time.Second, 2 * time.Second},
		{"cluster:\n  timeout: 1m30s\n  heartbeat: 500ms\n", 90 * time.Second, 500 * time.Millisecond},
		{"cluster:\n  timeout: \"2h\"\n  heartbeat: 1m\n", 2 * time.Hour, time.Minute},
	}
	for _, tc := range cases {
		c := mustParse(t, base+tc.doc, "d.yaml")
		if c.Cluster.Timeout != tc.timeout || c.Cluster.Heartbeat != tc.heartbeat {
			t.Errorf("%q: timeout %s heartbeat %s, want %s %s", tc.doc, c.Cluster.Timeout, c.Cluster.Heartbeat, tc.timeout, tc.heartbeat)
		}
	}
}

func TestNullKeepsDefault(t *testing.T) {
	c := mustParse(t, base+"lora:\n  r:\n  target_modules: ~\ntraining:\n", "n.yaml")
	d := Default()
	if c.LoRA.R != d.LoRA.R || !slices.Equal(c.LoRA.TargetModules, d.LoRA.TargetModules) || c.Training.LR != d.Training.LR {
		t.Errorf("null did not keep the defaults: %+v", c.LoRA)
	}
}

func TestScalarAcceptedForList(t *testing.T) {
	c := mustParse(t, base+"lora:\n  target_modules: all-linear\n", "l.yaml")
	if !slices.Equal(c.LoRA.TargetModules, []string{"all-linear"}) {
		t.Errorf("target_modules = %v, want [all-linear]", c.LoRA.TargetModules)
	}
}

func TestScalarListEntryLocated(t *testing.T) {
	probs := mustFail(t, base+"lora:\n  target_modules: qkv\n", "l.yaml")
	if len(probs) != 1 || probs[0].Path != "lora.target_modules[0]" || probs[0].Line != 7 {
		t.Errorf("want lora.target_modules[0] at line 7, got%s", render(probs))
	}
}

func TestAnchorsAndAliases(t *testing.T) {
	doc := base + "scoring:\n  metrics: &m [loss]\n  generation:\n    stop: *m\n"
	c := mustParse(t, doc, "a.yaml")
	if !slices.Equal(c.Scoring.Generation.Stop, []string{"loss"}) {
		t.Errorf("alias not followed: stop = %v", c.Scoring.Generation.Stop)
	}
}

func TestStringsTakeNumbersAsWritten(t *testing.T) {
	c := mustParse(t, "model:\n  revision: 0123\n", "r.yaml", baseSets...)
	// A YAML parser would read 0123 as an integer; the field wants the text as written.
	if c.Model.Revision != "0123" {
		t.Errorf("revision = %q, want \"0123\"", c.Model.Revision)
	}
}

func TestDecodeProblemSuppressesValidationOfSameField(t *testing.T) {
	// lora.r keeps its valid default after the type error, so there must be exactly one
	// problem, not a second one about the range of a value the user never wrote.
	probs := mustFail(t, base+"lora:\n  target_modules: [q_proj, 7, {a: b}]\n", "x.yaml")
	if len(probs) != 1 || probs[0].Path != "lora.target_modules[2]" {
		t.Errorf("want one problem at lora.target_modules[2], got%s", render(probs))
	}
}

func TestFieldErrorRendering(t *testing.T) {
	cases := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 3, Path: "lora.r", Msg: "m"}, "a.yaml:3: lora.r: m"},
		{FieldError{File: "a.yaml", Path: "lora.r", Msg: "m"}, "a.yaml: lora.r: m"},
		{FieldError{File: "a.yaml", Line: 3, Msg: "m"}, "a.yaml:3: m"},
		{FieldError{Path: "lora.r", Msg: "m"}, "lora.r: m"},
		{FieldError{Line: 2, Msg: "m"}, "line 2: m"},
		{FieldError{File: SetSource, Path: "training.lr", Msg: "m"}, "--set training.lr: m"},
		{FieldError{File: SetSource, Msg: "m"}, "--set: m"},
	}
	for _, tc := range cases {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestProblems(t *testing.T) {
	if Problems(nil) != nil || Problems(errors.New("plain")) != nil {
		t.Error("Problems of nil or a plain error should be nil")
	}
	_, err := Parse([]byte("lora: {r: 0, alpha: 0}\n"), "p.yaml", nil)
	wrapped := fmt.Errorf("herd train: %w", err)
	if got, want := len(Problems(wrapped)), 4; got != want {
		t.Errorf("Problems through a wrap = %d, want %d:\n%v", got, want, err)
	}
	var fe *FieldError
	if !errors.As(wrapped, &fe) || fe.File != "p.yaml" {
		t.Errorf("errors.As(*FieldError) = %v", fe)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base), "training.lr=1e-4")
	f.Add([]byte("lora: {r: x, y: 1}\n"), "lora.target_modules=[q_proj")
	f.Add([]byte("a: &a [*a]\n"), "=")
	for _, name := range Recipes() {
		data, _ := Recipe(name)
		f.Add(data, "cluster.timeout=45s")
	}
	f.Fuzz(func(t *testing.T, data []byte, set string) {
		c, err := Parse(data, "f.yaml", []string{set})
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			if len(Problems(err)) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			return
		}
		out, err := c.YAML()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(out, "f.yaml", nil); err != nil {
			t.Fatalf("valid config renders to an invalid one: %v\n%s", err, out)
		}
	})
}
