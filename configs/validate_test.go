package configs

import (
	"strings"
	"testing"
	"time"
)

// Each validation rule has a case that breaks it and nothing else. The overrides are
// written as YAML in a file, so each case also checks that the problem names the line.
func TestValidationRules(t *testing.T) {
	cases := []struct {
		name string
		doc  string // YAML after base; the offending key is on its last line
		path string
		msg  string
	}{
		{"run_name chars", "run_name: my/run", "run_name", "must be letters, digits"},
		{"run_name start", "run_name: .hidden", "run_name", "starting with a letter or digit"},
		{"run_name length", "run_name: " + strings.Repeat("a", 129), "run_name", "at most 128 characters, got 129"},
		{"run_name empty", "output_dir: out\nrun_name: \"\"", "run_name", "missing"},
		{"model.revision empty", "model:\n  path: m\n  revision: \"\"", "model.revision", "missing"},
		{"model.dtype", "model:\n  path: m\n  dtype: fp32", "model.dtype", `must be one of float32, bfloat16, float16, got "fp32"`},
		{"model.quantization", "model:\n  path: m\n  quantization: int8", "model.quantization", `must be one of none, nf4, got "int8"`},
		{"lora.r zero", "lora:\n  r: 0", "lora.r", "must be >= 1, got 0"},
		{"lora.alpha", "lora:\n  alpha: -2", "lora.alpha", "must be > 0, got -2"},
		{"lora.dropout one", "lora:\n  dropout: 1", "lora.dropout", "must be in [0, 1), got 1"},
		{"lora.dropout negative", "lora:\n  dropout: -0.1", "lora.dropout", "must be in [0, 1), got -0.1"},
		{"lora.target_modules empty", "lora:\n  target_modules: []", "lora.target_modules", "at least one of q_proj"},
		{"lora.target_modules unknown", "lora:\n  target_modules: [q_proj, qkv_proj]", "lora.target_modules[1]", `got "qkv_proj"`},
		{"lora.target_modules duplicate", "lora:\n  target_modules: [q_proj, v_proj, q_proj]", "lora.target_modules[2]", `duplicate entry "q_proj" (also at index 0)`},
		{"lora.target_modules all-linear mixed", "lora:\n  target_modules: [all-linear, q_proj]", "lora.target_modules", "must be the only entry"},
		{"dataset.eval_split range", "dataset:\n  train: t\n  eval_split: 1", "dataset.eval_split", "must be in [0, 1), got 1"},
		{"dataset.eval and eval_split", "dataset:\n  train: t\n  eval: e\n  eval_split: 0.1", "dataset.eval_split", "not both"},
		{"dataset.format", "dataset:\n  train: t\n  format: alpaca", "dataset.format", `must be one of completion, instruction, chat, got "alpaca"`},
		{"dataset.fields empty", "dataset:\n  train: t\n  fields:\n    messages: \"\"", "dataset.fields.messages", "missing: expected a column name"},
		{"dataset.max_seq_len", "dataset:\n  train: t\n  max_seq_len: 0", "dataset.max_seq_len", "must be >= 1, got 0"},
		{"dataset.truncation", "dataset:\n  train: t\n  truncation: middle", "dataset.truncation", `got "middle"`},
		{"dataset.on_error", "dataset:\n  train: t\n  on_error: ignore", "dataset.on_error", `must be one of fail, skip, got "ignore"`},
		{"training.epochs", "training:\n  epochs: 0", "training.epochs", "must be > 0, got 0"},
		{"training.max_steps", "training:\n  max_steps: -1", "training.max_steps", "must be >= 0, got -1"},
		{"training.micro_batch_size", "training:\n  micro_batch_size: 0", "training.micro_batch_size", "must be >= 1, got 0"},
		{"training.grad_accum", "training:\n  grad_accum: 0", "training.grad_accum", "must be >= 1, got 0"},
		{"training.global_batch_size negative", "training:\n  global_batch_size: -8", "training.global_batch_size", "must be >= 0, got -8"},
		{"training.global_batch_size divisible", "training:\n  micro_batch_size: 4\n  global_batch_size: 10", "training.global_batch_size", "divisible by micro_batch_size 4, got 10"},
		{"training.lr", "training:\n  lr: 0", "training.lr", "must be > 0, got 0"},
		{"training.scheduler", "training:\n  scheduler: step", "training.scheduler", `must be one of constant, linear, cosine, got "step"`},
		{"training.warmup_steps negative", "training:\n  warmup_steps: -1", "training.warmup_steps", "must be >= 0, got -1"},
		{"training.warmup_steps vs max_steps", "training:\n  max_steps: 10\n  warmup_steps: 10", "training.warmup_steps", "less than max_steps 10, got 10"},
		{"training.warmup_ratio range", "training:\n  warmup_ratio: 1", "training.warmup_ratio", "must be in [0, 1), got 1"},
		{"training.warmup both", "training:\n  warmup_steps: 5\n  warmup_ratio: 0.1", "training.warmup_ratio", "set warmup_steps or warmup_ratio, not both"},
		{"training.weight_decay", "training:\n  weight_decay: -0.1", "training.weight_decay", "must be >= 0, got -0.1"},
		{"training.adam_beta1", "training:\n  adam_beta1: 1", "training.adam_beta1", "must be in [0, 1), got 1"},
		{"training.adam_beta2", "training:\n  adam_beta2: 1.5", "training.adam_beta2", "must be in [0, 1), got 1.5"},
		{"training.adam_eps", "training:\n  adam_eps: 0", "training.adam_eps", "must be > 0, got 0"},
		{"training.max_grad_norm", "training:\n  max_grad_norm: -1", "training.max_grad_norm", "must be >= 0, got -1"},
		{"training.checkpoint_every", "training:\n  checkpoint_every: -1", "training.checkpoint_every", "must be >= 0, got -1"},
		{"training.eval_every negative", "training:\n  eval_every: -1", "training.eval_every", "must be >= 0, got -1"},
		{"training.eval_every without data", "training:\n  eval_every: 10", "training.eval_every", "needs evaluation data"},
		{"training.log_every", "training:\n  log_every: 0", "training.log_every", "must be >= 1, got 0"},
		{"training.threads", "training:\n  threads: -2", "training.threads", "must be >= 0, got -2"},
		{"training.autocast", "training:\n  autocast: fp16", "training.autocast", `must be one of none, bf16, got "fp16"`},
		{"training.autocast with float16", "model:\n  path: m\n  dtype: float16\ntraining:\n  autocast: bf16", "training.autocast", "needs model.dtype float32 or bfloat16, got float16"},
		{"scoring.task", "scoring:\n  task: rank", "scoring.task", `got "rank"`},
		{"scoring.batch_size", "scoring:\n  batch_size: 0", "scoring.batch_size", "must be >= 1, got 0"},
		{"scoring.metrics unknown", "scoring:\n  metrics: [loss, meteor]", "scoring.metrics[1]", `got "meteor"`},
		{"scoring.metrics duplicate", "scoring:\n  metrics: [loss, loss]", "scoring.metrics[1]", "duplicate entry"},
		{"scoring.metrics needs generate", "scoring:\n  metrics: [loss, rouge_l]", "scoring.metrics[1]", "rouge_l needs scoring.task generate, got task loss"},
		{"scoring.metrics accuracy", "scoring:\n  metrics: [accuracy]", "scoring.metrics[0]", "accuracy needs scoring.task generate or multiple_choice or classification"},
		{"scoring.generation.max_new_tokens", "scoring:\n  generation:\n    max_new_tokens: 0", "scoring.generation.max_new_tokens", "must be >= 1, got 0"},
		{"scoring.generation.temperature", "scoring:\n  generation:\n    temperature: -1", "scoring.generation.temperature", "must be >= 0, got -1"},
		{"scoring.generation.top_p zero", "scoring:\n  generation:\n    top_p: 0", "scoring.generation.top_p", "must be in (0, 1], got 0"},
		{"scoring.generation.top_p above one", "scoring:\n  generation:\n    top_p: 1.1", "scoring.generation.top_p", "must be in (0, 1], got 1.1"},
		{"scoring.generation.top_k", "scoring:\n  generation:\n    top_k: -1", "scoring.generation.top_k", "must be >= 0, got -1"},
		{"scoring.generation.stop empty", "scoring:\n  generation:\n    stop: [\"###\", \"\"]", "scoring.generation.stop[1]", "must not be empty"},
		{"scoring.on_row_error", "scoring:\n  on_row_error: skip", "scoring.on_row_error", `must be one of fail, record, got "skip"`},
		{"cluster.workers", "cluster:\n  workers: -1", "cluster.workers", "must be >= 0, got -1"},
		{"cluster.min_workers zero", "cluster:\n  min_workers: 0", "cluster.min_workers", "must be >= 1, got 0"},
		{"cluster.min_workers above workers", "cluster:\n  workers: 2\n  min_workers: 3", "cluster.min_workers", "must be <= workers 2, got 3"},
		{"cluster.max_workers negative", "cluster:\n  max_workers: -1", "cluster.max_workers", "must be >= 0, got -1"},
		{"cluster.max_workers below min", "cluster:\n  workers: 0\n  min_workers: 4\n  max_workers: 2", "cluster.max_workers", "must be >= min_workers 4"},
		{"cluster.max_workers below workers", "cluster:\n  workers: 4\n  max_workers: 2", "cluster.max_workers", "must be >= workers 4"},
		{"cluster.allreduce", "cluster:\n  allreduce: ring", "cluster.allreduce", `must be one of auto, rsag, direct, got "ring"`},
		{"cluster.compression", "cluster:\n  compression: int8", "cluster.compression", `must be one of none, bf16, fp16, got "int8"`},
		{"cluster.timeout", "cluster:\n  timeout: 0s", "cluster.timeout", "must be a duration > 0, got 0s"},
		{"cluster.heartbeat negative", "cluster:\n  heartbeat: -1s", "cluster.heartbeat", "must be a duration > 0, got -1s"},
		{"cluster.heartbeat vs timeout", "cluster:\n  timeout: 5s\n  heartbeat: 5s", "cluster.heartbeat", "must be shorter than timeout 5s, got 5s"},
		{"cluster.max_restarts", "cluster:\n  max_restarts: -1", "cluster.max_restarts", "must be >= 0, got -1"},
		{"telemetry.otlp_protocol", "telemetry:\n  otlp_protocol: thrift", "telemetry.otlp_protocol", `must be one of grpc, http, got "thrift"`},
		{"telemetry.sample_ratio", "telemetry:\n  sample_ratio: 1.5", "telemetry.sample_ratio", "must be in [0, 1], got 1.5"},
		{"telemetry.metrics_addr no port", "telemetry:\n  metrics_addr: localhost", "telemetry.metrics_addr", `must be host:port such as ":9090"`},
		{"telemetry.metrics_addr bad port", "telemetry:\n  metrics_addr: \"localhost:99999\"", "telemetry.metrics_addr", "port must be a number in [0, 65535]"},
		{"telemetry.log_format", "telemetry:\n  log_format: xml", "telemetry.log_format", `must be one of text, json, got "xml"`},
		{"telemetry.log_level", "telemetry:\n  log_level: trace", "telemetry.log_level", `must be one of debug, info, warn, error, got "trace"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Sections the case writes itself are not in the base, so the YAML has no
			// duplicate keys; the two required fields come from overrides instead.
			doc := tc.doc + "\n"
			var sets []string
			if !strings.Contains(doc, "model:") {
				sets = append(sets, baseSets[0])
			}
			if !strings.Contains(doc, "dataset:") {
				sets = append(sets, baseSets[1])
			}
			probs := mustFail(t, doc, "v.yaml", sets...)
			if len(probs) != 1 {
				t.Fatalf("want exactly one problem, got%s", render(probs))
			}
			p := probs[0]
			if p.Path != tc.path || !strings.Contains(p.Msg, tc.msg) {
				t.Errorf("got %q, want path %s with %q", p, tc.path, tc.msg)
			}
			if want := strings.Count(doc, "\n"); p.File != "v.yaml" || p.Line != want {
				t.Errorf("problem at %s:%d, want v.yaml:%d", p.File, p.Line, want)
			}
			if p.Msg != strings.ToLower(p.Msg[:1])+p.Msg[1:] {
				t.Errorf("message starts upper-case: %q", p.Msg)
			}
		})
	}
}

// The boundaries that are allowed must stay allowed.
func TestValidationAcceptsBoundaries(t *testing.T) {
	doc := base + `lora: {dropout: 0, target_modules: [all-linear]}
training: {max_steps: 1, warmup_steps: 0, warmup_ratio: 0, adam_beta1: 0, max_grad_norm: 0, global_batch_size: 8, micro_batch_size: 4}
scoring: {task: classification, metrics: [accuracy, loss], generation: {temperature: 0, top_p: 1, top_k: 0}}
cluster: {workers: 0, min_workers: 3, max_workers: 3, heartbeat: 29s}
telemetry: {sample_ratio: 0, metrics_addr: ":0"}
`
	mustParse(t, doc, "b.yaml")
	mustParse(t, base+"telemetry: {sample_ratio: 1, metrics_addr: \"[::1]:9090\"}\n", "b.yaml")
	mustParse(t, base+"  eval_split: 0.1\ntraining: {eval_every: 5}\n", "b.yaml")
}

func TestValidateReportsEverything(t *testing.T) {
	c := Default()
	c.LoRA.R = 0
	c.Training.LR = -1
	c.Cluster.Heartbeat = time.Minute
	probs := Problems(c.Validate())
	want := []string{
		"run_name: missing: expected a name for the run, used as artifacts/<run_name>",
		"output_dir: missing: expected the folder for checkpoints, logs, predictions and metrics",
		"model.path: missing: expected a local Hugging Face model directory or a hub id ORG/NAME",
		"lora.r: must be >= 1, got 0",
		"dataset.train: missing: expected the JSONL file of training rows",
		"training.lr: must be > 0, got -1",
		"cluster.heartbeat: must be shorter than timeout 30s, got 1m0s",
	}
	if len(probs) != len(want) {
		t.Fatalf("got %d problems, want %d:%s", len(probs), len(want), render(probs))
	}
	for i, p := range probs {
		if p.Error() != want[i] || p.Line != 0 || p.File != "" {
			t.Errorf("problem %d = %q (line %d), want %q at line 0", i, p, p.Line, want[i])
		}
	}

	c = Default()
	c.RunName, c.OutputDir, c.Model.Path, c.Dataset.Train = "r", "out", "m", "t"
	if err := c.Validate(); err != nil {
		t.Errorf("a complete Default() config is invalid: %v", err)
	}
}
