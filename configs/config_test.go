package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRecipesParseAndValidate(t *testing.T) {
	want := []string{"llama3-8b-lora", "llama3-8b-qlora", "tiny"}
	if got := Recipes(); !slices.Equal(got, want) {
		t.Fatalf("Recipes() = %v, want %v", got, want)
	}
	for _, name := range Recipes() {
		t.Run(name, func(t *testing.T) {
			data, err := Recipe(name)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(data), "# "+name+":") {
				t.Errorf("recipe %s does not start with a comment header naming it", name)
			}
			c := mustParse(t, string(data), name+".yaml")
			if c.RunName != name || c.OutputDir != "artifacts/"+name {
				t.Errorf("run_name %q output_dir %q, want %q and artifacts/%s", c.RunName, c.OutputDir, name, name)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
		})
	}
}

func TestRecipeValues(t *testing.T) {
	load := func(name string) *Config {
		data, err := Recipe(name + ".yaml") // with the extension works too
		if err != nil {
			t.Fatal(err)
		}
		return mustParse(t, string(data), name+".yaml")
	}
	tiny := load("tiny")
	checks := []struct {
		name      string
		got, want any
	}{
		{"tiny model.path", tiny.Model.Path, "data/models/tiny"},
		{"tiny model.dtype", tiny.Model.DType, "float32"},
		{"tiny dataset", [3]string{tiny.Dataset.Train, tiny.Dataset.Eval, tiny.Dataset.Format}, [3]string{"data/tiny/train.jsonl", "data/tiny/eval.jsonl", "completion"}},
		{"tiny max_seq_len", tiny.Dataset.MaxSeqLen, 512},
		{"tiny lora", [2]float64{float64(tiny.LoRA.R), tiny.LoRA.Alpha}, [2]float64{8, 16}},
		{"tiny target_modules", tiny.LoRA.TargetModules, []string{"q_proj", "v_proj"}},
		{"tiny batch", [3]int{tiny.Training.MicroBatchSize, tiny.Training.GradAccum, tiny.Training.MaxSteps}, [3]int{4, 1, 30}},
		{"tiny lr", tiny.Training.LR, 1e-3},
		{"tiny schedule", [2]any{tiny.Training.Scheduler, tiny.Training.WarmupSteps}, [2]any{"cosine", 3}},
		{"tiny checkpoint_every", tiny.Training.CheckpointEvery, 10},
		{"tiny workers", tiny.Cluster.Workers, 1},
		{"tiny metrics", tiny.Scoring.Metrics, []string{"loss", "perplexity"}},
		{"tiny scoring.data", tiny.Scoring.Data, "data/tiny/eval.jsonl"},
	}
	lora := load("llama3-8b-lora")
	qlora := load("llama3-8b-qlora")
	for _, c := range []*Config{lora, qlora} {
		n := c.RunName
		checks = append(checks, []struct {
			name      string
			got, want any
		}{
			{n + " model", [3]string{c.Model.Path, c.Model.DType, c.Dataset.Format}, [3]string{"meta-llama/Meta-Llama-3-8B", "bfloat16", "chat"}},
			{n + " modules", c.LoRA.Modules(), targetModules},
			{n + " max_seq_len", c.Dataset.MaxSeqLen, 2048},
			{n + " batch", [2]int{c.Training.MicroBatchSize, c.Training.GradAccum}, [2]int{2, 8}},
			{n + " schedule", [3]any{c.Training.Scheduler, c.Training.WarmupRatio, c.Training.Epochs}, [3]any{"cosine", 0.03, 1.0}},
			{n + " autocast", c.Training.Autocast, "bf16"},
			{n + " gradient_checkpointing", c.Model.GradientCheckpointing, true},
		}...)
	}
	checks = append(checks, []struct {
		name      string
		got, want any
	}{
		{"lora adapter", [3]any{lora.LoRA.R, lora.LoRA.Alpha, lora.Training.LR}, [3]any{16, 32.0, 2e-4}},
		{"lora quantization", lora.Model.Quantization, "none"},
		{"qlora adapter", [3]any{qlora.LoRA.R, qlora.LoRA.Alpha, qlora.Training.LR}, [3]any{64, 16.0, 1e-4}},
		{"qlora quantization", [2]any{qlora.Model.Quantization, qlora.Model.DoubleQuant}, [2]any{"nf4", true}},
	}...)
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestRecipeUnknown(t *testing.T) {
	for _, name := range []string{"nope", "", "../tiny", "configs/tiny"} {
		_, err := Recipe(name)
		if !errors.Is(err, ErrUnknownRecipe) {
			t.Errorf("Recipe(%q) error = %v, want ErrUnknownRecipe", name, err)
		} else if !strings.Contains(err.Error(), "tiny") {
			t.Errorf("Recipe(%q) error %q does not list the known recipes", name, err)
		}
	}
}

func TestDefaultsApplied(t *testing.T) {
	c := mustParse(t, base, "configs/my run.yaml")
	want := Default()
	want.RunName = "my-run"
	want.OutputDir = "artifacts/my-run"
	want.Model.Path = "data/models/tiny"
	want.Dataset.Train = "data/tiny/train.jsonl"
	if got := withoutSources(c); !reflect.DeepEqual(got, want) {
		t.Errorf("defaults not applied:\ngot  %+v\nwant %+v", got, want)
	}
	// Spot-check the documented defaults, so that a changed Default() fails here too.
	d := Default()
	spots := []struct {
		name      string
		got, want any
	}{
		{"model", [3]any{d.Model.Revision, d.Model.DType, d.Model.DoubleQuant}, [3]any{"main", "bfloat16", true}},
		{"lora", [3]any{d.LoRA.R, d.LoRA.Alpha, d.LoRA.Dropout}, [3]any{16, 32.0, 0.05}},
		{"lora.target_modules", d.LoRA.TargetModules, []string{"q_proj", "k_proj", "v_proj", "o_proj"}},
		{"dataset", [3]any{d.Dataset.Format, d.Dataset.MaxSeqLen, d.Dataset.Truncation}, [3]any{"completion", 2048, "right"}},
		{"dataset.fields", d.Dataset.Fields, Fields{"text", "instruction", "input", "output", "messages", "id"}},
		{"training", [4]any{d.Training.Epochs, d.Training.MicroBatchSize, d.Training.LR, d.Training.Scheduler}, [4]any{1.0, 4, 2e-4, "cosine"}},
		{"adam", [4]float64{d.Training.AdamBeta1, d.Training.AdamBeta2, d.Training.AdamEps, d.Training.MaxGradNorm}, [4]float64{0.9, 0.999, 1e-8, 1}},
		{"training misc", [3]any{d.Training.Seed, d.Training.LogEvery, d.Training.Autocast}, [3]any{42, 1, "none"}},
		{"scoring", [3]any{d.Scoring.Task, d.Scoring.BatchSize, d.Scoring.OnRowError}, [3]any{"loss", 8, "record"}},
		{"generation", [2]any{d.Scoring.Generation.MaxNewTokens, d.Scoring.Generation.TopP}, [2]any{128, 1.0}},
		{"cluster", [4]any{d.Cluster.Workers, d.Cluster.MinWorkers, d.Cluster.AllReduce, d.Cluster.Compression}, [4]any{1, 1, "auto", "none"}},
		{"cluster times", [3]any{d.Cluster.Timeout, d.Cluster.Heartbeat, d.Cluster.MaxRestarts}, [3]any{30 * time.Second, 2 * time.Second, 10}},
		{"telemetry", [4]any{d.Telemetry.OTLPProtocol, d.Telemetry.SampleRatio, d.Telemetry.LogFormat, d.Telemetry.LogLevel}, [4]any{"grpc", 1.0, "text", "info"}},
	}
	for _, s := range spots {
		if !reflect.DeepEqual(s.got, s.want) {
			t.Errorf("Default() %s = %v, want %v", s.name, s.got, s.want)
		}
	}
}

func TestDerivedDefaults(t *testing.T) {
	cases := []struct {
		name, doc, file   string
		sets              []string
		run, out, scoring string
	}{
		{"from file name", base, "tiny.yaml", nil, "tiny", "artifacts/tiny", ""},
		{"no file name", base, "", nil, "run", "artifacts/run", ""},
		{"odd characters", base, "/x/_my run!.yml", nil, "my-run-", "artifacts/my-run-", ""},
		{"explicit run_name", base + "run_name: exp1\n", "tiny.yaml", nil, "exp1", "artifacts/exp1", ""},
		{"explicit output_dir", base + "output_dir: /scratch/out\n", "tiny.yaml", nil, "tiny", "/scratch/out", ""},
		{"set run_name moves output", base, "tiny.yaml", []string{"run_name=exp2"}, "exp2", "artifacts/exp2", ""},
		{"scoring.data from eval", base + "  eval: e.jsonl\n", "a.yaml", nil, "a", "artifacts/a", "e.jsonl"},
		{"explicit scoring.data", base + "  eval: e.jsonl\nscoring:\n  data: s.jsonl\n", "a.yaml", nil, "a", "artifacts/a", "s.jsonl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.doc, tc.file, tc.sets...)
			if c.RunName != tc.run || c.OutputDir != tc.out || c.Scoring.Data != tc.scoring {
				t.Errorf("got run_name %q output_dir %q scoring.data %q, want %q %q %q",
					c.RunName, c.OutputDir, c.Scoring.Data, tc.run, tc.out, tc.scoring)
			}
		})
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	// Every section with values away from the defaults, and strings that look like
	// other YAML types, which the renderer must quote.
	full := `
run_name: rt
model: {path: data/models/tiny, revision: "2024", quantization: nf4, double_quant: false}
dataset:
  train: data/tiny/train.jsonl
  eval: "data/e v.jsonl"
  format: instruction
  fields: {instruction: prompt, output: "true", id: "123"}
  packing: true
lora: {target_modules: all-linear, rslora: true, alpha: 7.5}
training:
  max_steps: 100
  global_batch_size: 64
  warmup_steps: 10
  lr: 3e-5
  adam_eps: 1e-10
  weight_decay: 0.01
scoring:
  task: generate
  metrics: [exact_match, rouge_l]
  generation: {temperature: 0.7, top_p: 0.9, top_k: 50, seed: -3, stop: ["\n\n", "###", "null", "a: b"]}
cluster: {workers: 0, max_workers: 8, timeout: 1m30s, heartbeat: 250ms, compression: bf16}
telemetry: {otlp_endpoint: "localhost:4317", metrics_addr: ":9090", sample_ratio: 0.25, log_level: debug}
`
	docs := map[string]string{"full": full, "base": base}
	for _, name := range Recipes() {
		data, _ := Recipe(name)
		docs[name] = string(data)
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, doc, name+".yaml")
			out, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			back := mustParse(t, string(out), "shown.yaml")
			if !reflect.DeepEqual(withoutSources(c), withoutSources(back)) {
				t.Errorf("round trip changed the config:\nbefore %+v\nafter  %+v\nyaml:\n%s", withoutSources(c), withoutSources(back), out)
			}
			// Rendering is stable: the second rendering is byte for byte the first.
			again, _ := back.YAML()
			if string(again) != string(out) {
				t.Errorf("second rendering differs:\n%s\n---\n%s", out, again)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "exp.yaml")
	if err := os.WriteFile(good, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good, []string{"training.lr=1e-4"})
	if err != nil {
		t.Fatal(err)
	}
	if c.RunName != "exp" || c.Training.LR != 1e-4 {
		t.Errorf("Load: run_name %q lr %g, want exp and 1e-4", c.RunName, c.Training.LR)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(base+"lora:\n  r: -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad, nil)
	if want := bad + ":7: lora.r: must be >= 1, got -1"; err == nil || err.Error() != want {
		t.Errorf("Load(bad) error = %v, want %q", err, want)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"), nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "configs: read config:") {
		t.Errorf("Load(missing) error = %v, want a wrapped fs.ErrNotExist", err)
	}
}

func TestModules(t *testing.T) {
	if got := (LoRA{TargetModules: []string{allLinear}}).Modules(); !slices.Equal(got, targetModules) {
		t.Errorf("all-linear expands to %v, want %v", got, targetModules)
	}
	in := []string{"q_proj", "v_proj"}
	got := (LoRA{TargetModules: in}).Modules()
	got[0] = "changed"
	if in[0] != "q_proj" {
		t.Error("Modules returned the config's own slice")
	}
}
