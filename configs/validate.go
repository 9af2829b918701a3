package configs

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// allLinear as lora.target_modules means every linear projection of the block.
const allLinear = "all-linear"

// The allowed values of the enumerated fields, in the order messages list them.
var (
	dtypes          = []string{"float32", "bfloat16", "float16"}
	quantizations   = []string{"none", "nf4"}
	targetModules   = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
	formats         = []string{"completion", "instruction", "chat"}
	truncations     = []string{"right", "left", "drop"}
	onErrors        = []string{"fail", "skip"}
	schedulers      = []string{"constant", "linear", "cosine"}
	autocasts       = []string{"none", "bf16"}
	taskNames       = []string{"loss", "generate", "multiple_choice", "classification"}
	metricNames     = []string{"loss", "perplexity", "exact_match", "accuracy", "f1", "rouge_l", "bleu"}
	rowErrorActions = []string{"fail", "record"}
	allReduces      = []string{"auto", "rsag", "direct"}
	compressions    = []string{"none", "bf16", "fp16"}
	otlpProtocols   = []string{"grpc", "http"}
	logFormats      = []string{"text", "json"}
	logLevels       = []string{"debug", "info", "warn", "error"}
)

// metricTasks lists the tasks that can produce each metric; loss and perplexity come
// from the reference tokens, which every task scores.
var metricTasks = map[string][]string{
	"exact_match": {"generate"},
	"f1":          {"generate"},
	"rouge_l":     {"generate"},
	"bleu":        {"generate"},
	"accuracy":    {"generate", "multiple_choice", "classification"},
}

// Validate checks ranges and cross-field rules and returns every problem at once, joined;
// each part is a *FieldError located at the YAML key when the config came from Parse or
// Load (see Problems). It returns nil for a usable configuration. Validate does not fill
// derived defaults: a Config built in code must set RunName and OutputDir itself.
func (c *Config) Validate() error {
	return joinProblems(c.validate())
}

// checker collects problems located through the config's sources.
type checker struct {
	src   *sources
	probs []*FieldError
}

func (k *checker) add(path, format string, args ...any) {
	k.probs = append(k.probs, k.src.problem(path, format, args...))
}

func (k *checker) oneOf(path, got string, allowed []string) {
	if !slices.Contains(allowed, got) {
		k.add(path, "must be one of %s, got %q", strings.Join(allowed, ", "), got)
	}
}

func (k *checker) required(path, got, what string) {
	if strings.TrimSpace(got) == "" {
		k.add(path, "missing: expected %s", what)
	}
}

func (k *checker) intMin(path string, got, lo int) {
	if got < lo {
		k.add(path, "must be >= %d, got %d", lo, got)
	}
}

// The float checks are written so that NaN fails them.
func (k *checker) positive(path string, got float64) {
	if !(got > 0) {
		k.add(path, "must be > 0, got %s", fmtFloat(got))
	}
}

func (k *checker) nonNegative(path string, got float64) {
	if !(got >= 0) {
		k.add(path, "must be >= 0, got %s", fmtFloat(got))
	}
}

// fraction checks got in [0, 1), or [0, 1] when closed.
func (k *checker) fraction(path string, got float64, closed bool) {
	if closed && !(got >= 0 && got <= 1) {
		k.add(path, "must be in [0, 1], got %s", fmtFloat(got))
	}
	if !closed && !(got >= 0 && got < 1) {
		k.add(path, "must be in [0, 1), got %s", fmtFloat(got))
	}
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func (c *Config) validate() []*FieldError {
	k := &checker{src: c.src}
	c.validateRun(k)
	c.validateModel(k)
	c.validateLoRA(k)
	c.validateDataset(k)
	c.validateTraining(k)
	c.validateScoring(k)
	c.validateCluster(k)
	c.validateTelemetry(k)
	return k.probs
}

func (c *Config) validateRun(k *checker) {
	switch name := c.RunName; {
	case name == "":
		k.add("run_name", "missing: expected a name for the run, used as artifacts/<run_name>")
	case len(name) > maxRunName:
		k.add("run_name", "must be at most %d characters, got %d", maxRunName, len(name))
	case !isRunNameStart(rune(name[0])) || strings.IndexFunc(name, func(r rune) bool { return !isRunNameRune(r) }) >= 0:
		k.add("run_name", "must be letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", name)
	}
	k.required("output_dir", c.OutputDir, "the folder for checkpoints, logs, predictions and metrics")
}

func isRunNameStart(r rune) bool { return isRunNameRune(r) && r != '-' && r != '.' && r != '_' }

func (c *Config) validateModel(k *checker) {
	m := c.Model
	k.required("model.path", m.Path, "a local Hugging Face model directory or a hub id ORG/NAME")
	k.required("model.revision", m.Revision, `a hub branch, tag or commit (default "main")`)
	k.oneOf("model.dtype", m.DType, dtypes)
	k.oneOf("model.quantization", m.Quantization, quantizations)
}

func (c *Config) validateLoRA(k *checker) {
	l := c.LoRA
	k.intMin("lora.r", l.R, 1)
	k.positive("lora.alpha", l.Alpha)
	k.fraction("lora.dropout", l.Dropout, false)
	if len(l.TargetModules) == 0 {
		k.add("lora.target_modules", "must name at least one of %s, or be %s",
			strings.Join(targetModules, ", "), allLinear)
	}
	if slices.Contains(l.TargetModules, allLinear) && len(l.TargetModules) > 1 {
		k.add("lora.target_modules", "%s already means all seven projections and must be the only entry, got %s",
			allLinear, strings.Join(l.TargetModules, ", "))
		return
	}
	k.subset("lora.target_modules", l.TargetModules, targetModules, allLinear)
}

// subset checks that got holds only allowed values (or extra), each at most once.
func (k *checker) subset(path string, got, allowed []string, extra ...string) {
	seen := map[string]int{}
	for i, v := range got {
		ep := fmt.Sprintf("%s[%d]", path, i)
		if first, dup := seen[v]; dup {
			k.add(ep, "duplicate entry %q (also at index %d)", v, first)
			continue
		}
		seen[v] = i
		if !slices.Contains(allowed, v) && !slices.Contains(extra, v) {
			k.add(ep, "must be one of %s, got %q", strings.Join(append(slices.Clone(allowed), extra...), ", "), v)
		}
	}
}

func (c *Config) validateDataset(k *checker) {
	d := c.Dataset
	k.required("dataset.train", d.Train, "the JSONL file of training rows")
	k.fraction("dataset.eval_split", d.EvalSplit, false)
	if d.Eval != "" && d.EvalSplit > 0 {
		k.add("dataset.eval_split", "set dataset.eval or dataset.eval_split, not both (eval is %q, eval_split %s)",
			d.Eval, fmtFloat(d.EvalSplit))
	}
	k.oneOf("dataset.format", d.Format, formats)
	for _, f := range []struct{ path, v string }{
		{"dataset.fields.text", d.Fields.Text},
		{"dataset.fields.instruction", d.Fields.Instruction},
		{"dataset.fields.input", d.Fields.Input},
		{"dataset.fields.output", d.Fields.Output},
		{"dataset.fields.messages", d.Fields.Messages},
		{"dataset.fields.id", d.Fields.ID},
	} {
		k.required(f.path, f.v, "a column name")
	}
	k.intMin("dataset.max_seq_len", d.MaxSeqLen, 1)
	k.oneOf("dataset.truncation", d.Truncation, truncations)
	k.oneOf("dataset.on_error", d.OnError, onErrors)
}

func (c *Config) validateTraining(k *checker) {
	t := c.Training
	k.positive("training.epochs", t.Epochs)
	k.intMin("training.max_steps", t.MaxSteps, 0)
	k.intMin("training.micro_batch_size", t.MicroBatchSize, 1)
	k.intMin("training.grad_accum", t.GradAccum, 1)
	k.intMin("training.global_batch_size", t.GlobalBatchSize, 0)
	if t.GlobalBatchSize > 0 && t.MicroBatchSize > 0 && t.GlobalBatchSize%t.MicroBatchSize != 0 {
		k.add("training.global_batch_size", "must be divisible by micro_batch_size %d, got %d",
			t.MicroBatchSize, t.GlobalBatchSize)
	}
	k.positive("training.lr", t.LR)
	k.oneOf("training.scheduler", t.Scheduler, schedulers)
	k.intMin("training.warmup_steps", t.WarmupSteps, 0)
	k.fraction("training.warmup_ratio", t.WarmupRatio, false)
	if t.WarmupSteps > 0 && t.WarmupRatio > 0 {
		k.add("training.warmup_ratio", "set warmup_steps or warmup_ratio, not both (warmup_steps is %d, warmup_ratio %s)",
			t.WarmupSteps, fmtFloat(t.WarmupRatio))
	}
	if t.MaxSteps > 0 && t.WarmupSteps >= t.MaxSteps {
		k.add("training.warmup_steps", "must be less than max_steps %d, got %d", t.MaxSteps, t.WarmupSteps)
	}
	k.nonNegative("training.weight_decay", t.WeightDecay)
	k.fraction("training.adam_beta1", t.AdamBeta1, false)
	k.fraction("training.adam_beta2", t.AdamBeta2, false)
	k.positive("training.adam_eps", t.AdamEps)
	k.nonNegative("training.max_grad_norm", t.MaxGradNorm)
	k.intMin("training.checkpoint_every", t.CheckpointEvery, 0)
	k.intMin("training.eval_every", t.EvalEvery, 0)
	if t.EvalEvery > 0 && c.Dataset.Eval == "" && c.Dataset.EvalSplit == 0 {
		k.add("training.eval_every", "needs evaluation data: set dataset.eval or dataset.eval_split, or eval_every 0 (got %d)",
			t.EvalEvery)
	}
	k.intMin("training.log_every", t.LogEvery, 1)
	k.intMin("training.threads", t.Threads, 0)
	k.oneOf("training.autocast", t.Autocast, autocasts)
	if t.Autocast == "bf16" && c.Model.DType == "float16" {
		k.add("training.autocast", "bf16 needs model.dtype float32 or bfloat16, got float16")
	}
}

func (c *Config) validateScoring(k *checker) {
	s := c.Scoring
	k.oneOf("scoring.task", s.Task, taskNames)
	k.intMin("scoring.batch_size", s.BatchSize, 1)
	k.subset("scoring.metrics", s.Metrics, metricNames)
	for i, m := range s.Metrics {
		if tasks, ok := metricTasks[m]; ok && slices.Contains(taskNames, s.Task) && !slices.Contains(tasks, s.Task) {
			k.add(fmt.Sprintf("scoring.metrics[%d]", i), "%s needs scoring.task %s, got task %s",
				m, strings.Join(tasks, " or "), s.Task)
		}
	}
	g := s.Generation
	k.intMin("scoring.generation.max_new_tokens", g.MaxNewTokens, 1)
	k.nonNegative("scoring.generation.temperature", g.Temperature)
	if !(g.TopP > 0 && g.TopP <= 1) {
		k.add("scoring.generation.top_p", "must be in (0, 1], got %s", fmtFloat(g.TopP))
	}
	k.intMin("scoring.generation.top_k", g.TopK, 0)
	for i, stop := range g.Stop {
		if stop == "" {
			k.add(fmt.Sprintf("scoring.generation.stop[%d]", i), "must not be empty: an empty stop string would end every generation at once")
		}
	}
	k.oneOf("scoring.on_row_error", s.OnRowError, rowErrorActions)
	seen := map[string]bool{}
	for i, l := range s.Labels {
		switch {
		case l == "":
			k.add(fmt.Sprintf("scoring.labels[%d]", i), "must not be empty")
		case seen[l]:
			k.add(fmt.Sprintf("scoring.labels[%d]", i), "duplicate label %q", l)
		}
		seen[l] = true
	}
	if len(s.Labels) > 0 && s.Task != "classification" {
		k.add("scoring.labels", "only task classification reads labels, got task %s", s.Task)
	}
	if s.Task == "generate" && c.Dataset.Format == "completion" {
		k.add("scoring.task", "generate needs a prompt: dataset.format completion has none (use instruction or chat)")
	}
}

func (c *Config) validateCluster(k *checker) {
	cl := c.Cluster
	k.intMin("cluster.workers", cl.Workers, 0)
	k.intMin("cluster.min_workers", cl.MinWorkers, 1)
	if cl.Workers > 0 && cl.MinWorkers > cl.Workers {
		k.add("cluster.min_workers", "must be <= workers %d, got %d", cl.Workers, cl.MinWorkers)
	}
	k.intMin("cluster.max_workers", cl.MaxWorkers, 0)
	if cl.MaxWorkers > 0 && cl.MaxWorkers < cl.MinWorkers {
		k.add("cluster.max_workers", "must be >= min_workers %d (or 0 for unbounded), got %d", cl.MinWorkers, cl.MaxWorkers)
	}
	if cl.MaxWorkers > 0 && cl.Workers > cl.MaxWorkers {
		k.add("cluster.max_workers", "must be >= workers %d (or 0 for unbounded), got %d", cl.Workers, cl.MaxWorkers)
	}
	k.oneOf("cluster.allreduce", cl.AllReduce, allReduces)
	k.oneOf("cluster.compression", cl.Compression, compressions)
	if cl.Timeout <= 0 {
		k.add("cluster.timeout", "must be a duration > 0, got %s", cl.Timeout)
	}
	switch {
	case cl.Heartbeat <= 0:
		k.add("cluster.heartbeat", "must be a duration > 0, got %s", cl.Heartbeat)
	case cl.Timeout > 0 && cl.Heartbeat >= cl.Timeout:
		k.add("cluster.heartbeat", "must be shorter than timeout %s, got %s", cl.Timeout, cl.Heartbeat)
	}
	k.intMin("cluster.max_restarts", cl.MaxRestarts, 0)
}

func (c *Config) validateTelemetry(k *checker) {
	t := c.Telemetry
	k.oneOf("telemetry.otlp_protocol", t.OTLPProtocol, otlpProtocols)
	k.fraction("telemetry.sample_ratio", t.SampleRatio, true)
	if t.MetricsAddr != "" {
		if msg := checkHostPort(t.MetricsAddr); msg != "" {
			k.add("telemetry.metrics_addr", "%s, got %q", msg, t.MetricsAddr)
		}
	}
	k.oneOf("telemetry.log_format", t.LogFormat, logFormats)
	k.oneOf("telemetry.log_level", t.LogLevel, logLevels)
}

func checkHostPort(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "must be host:port such as \":9090\" or \"127.0.0.1:9090\""
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "port must be a number in [0, 65535]"
	}
	return ""
}
