// Package configs owns herd's run configuration: the one YAML schema used by every mode
// (single node `herd train cfg.yaml` and cluster `herd submit cfg.yaml`), its defaults,
// a strict decoder that reports every problem at once with file, line and field path,
// `--set path=value` overrides, cross-field validation, rendering of the effective
// configuration, and the shipped recipes (tiny demo, Llama 3 8B LoRA and QLoRA), which
// are embedded in the binary.
package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is one run: what to train, on what data, how, how to score it, on how many
// workers, and where telemetry goes. The zero value is not useful; start from Default or
// use Load / Parse, which apply defaults, the YAML, the overrides and Validate in that order.
type Config struct {
	// RunName names the run and its output folder artifacts/<run_name>. Letters, digits,
	// '.', '_' and '-', starting with a letter or digit, at most 128 characters.
	// Default: the config file name without its extension ("run" when there is no file).
	RunName string `yaml:"run_name"`
	// OutputDir is where checkpoints, logs, predictions and metrics go.
	// Default: artifacts/<run_name>.
	OutputDir string `yaml:"output_dir"`

	Model     Model     `yaml:"model"`
	LoRA      LoRA      `yaml:"lora"`
	Dataset   Dataset   `yaml:"dataset"`
	Training  Training  `yaml:"training"`
	Scoring   Scoring   `yaml:"scoring"`
	Cluster   Cluster   `yaml:"cluster"`
	Telemetry Telemetry `yaml:"telemetry"`

	// src remembers where each field came from so that Validate can name file and line.
	// It is not part of the configuration: two configs with equal fields are equal runs.
	src *sources
}

// Model is the base model to adapt.
type Model struct {
	// Path is a local Hugging Face model directory (config.json, *.safetensors,
	// tokenizer.json) or a hub id ORG/NAME. Required.
	Path string `yaml:"path"`
	// Revision is the hub branch, tag or commit to download; ignored for local paths.
	// Default "main".
	Revision string `yaml:"revision"`
	// DType is the dtype of the frozen base weights: float32, bfloat16 or float16.
	// With quantization nf4 it is the compute dtype. Default bfloat16.
	DType string `yaml:"dtype"`
	// Quantization of the frozen base weights: none (LoRA) or nf4 (QLoRA). Default none.
	Quantization string `yaml:"quantization"`
	// DoubleQuant also quantizes the nf4 block scales (saves about 0.4 bits per weight).
	// Only meaningful with quantization nf4. Default true.
	DoubleQuant bool `yaml:"double_quant"`
	// GradientCheckpointing recomputes activations in the backward pass instead of
	// keeping them: less memory, about a third more compute. Default false.
	GradientCheckpointing bool `yaml:"gradient_checkpointing"`
}

// LoRA is the adapter: which linear layers get low-rank updates and how large they are.
type LoRA struct {
	// R is the rank of each update, > 0. Default 16.
	R int `yaml:"r"`
	// Alpha scales the update by alpha/r (alpha/sqrt(r) with rslora), > 0. Default 32.
	Alpha float64 `yaml:"alpha"`
	// Dropout on the adapter input during training, in [0, 1). Default 0.05.
	Dropout float64 `yaml:"dropout"`
	// TargetModules are the projections that get adapters: a subset of q_proj, k_proj,
	// v_proj, o_proj, gate_proj, up_proj, down_proj without duplicates, or the single value
	// all-linear (all seven). A single string is read as a one-element list.
	// Default [q_proj, k_proj, v_proj, o_proj].
	TargetModules []string `yaml:"target_modules"`
	// RSLoRA scales by alpha/sqrt(r) (rank-stabilized LoRA) instead of alpha/r. Default false.
	RSLoRA bool `yaml:"rslora"`
}

// Dataset is the training data and how rows become token sequences.
type Dataset struct {
	// Train is the JSONL file of training rows. Required.
	Train string `yaml:"train"`
	// Eval is the JSONL file of evaluation rows. Optional; see EvalSplit.
	Eval string `yaml:"eval"`
	// EvalSplit is the fraction of Train held out for evaluation when Eval is empty, in
	// [0, 1); 0 holds nothing out. Setting both Eval and EvalSplit is an error. Default 0.
	EvalSplit float64 `yaml:"eval_split"`
	// Format is how a row is read: completion (one text field), instruction
	// (instruction, optional input, output) or chat (a list of role/content messages).
	// Default completion.
	Format string `yaml:"format"`
	// Fields maps the logical fields to the column names of the rows.
	Fields Fields `yaml:"fields"`
	// MaxSeqLen is the longest token sequence trained on, > 0. Default 2048.
	MaxSeqLen int `yaml:"max_seq_len"`
	// Packing concatenates short examples into full max_seq_len sequences. Default false.
	Packing bool `yaml:"packing"`
	// TrainOnPrompt also computes the loss on prompt tokens (instruction and chat formats);
	// by default only the response is trained on. Default false.
	TrainOnPrompt bool `yaml:"train_on_prompt"`
	// Truncation says what to do with a row longer than max_seq_len: right (cut the end),
	// left (cut the beginning) or drop (skip the row). Default right.
	Truncation string `yaml:"truncation"`
	// OnError says what a malformed row does (a missing or non-string field, an empty
	// text, a line that is not JSON): fail (stop, naming file, line and reason) or skip
	// (leave the row out and count it). Default fail.
	OnError string `yaml:"on_error"`
}

// Fields are the column names of a data row, one per logical field. Each defaults to
// the logical name itself and must not be empty.
type Fields struct {
	// Text is the column of a completion row. Default "text".
	Text string `yaml:"text"`
	// Instruction is the prompt column of an instruction row. Default "instruction".
	Instruction string `yaml:"instruction"`
	// Input is the optional context column of an instruction row. Default "input".
	Input string `yaml:"input"`
	// Output is the response column of an instruction row. Default "output".
	Output string `yaml:"output"`
	// Messages is the list-of-messages column of a chat row. Default "messages".
	Messages string `yaml:"messages"`
	// ID is the example id column, used to order predictions; rows without it are
	// numbered by position. Default "id".
	ID string `yaml:"id"`
}

// Training is the optimization: schedule, batch sizes, optimizer and checkpoints.
type Training struct {
	// Epochs over the training set, > 0; fractions allowed. Ignored when MaxSteps > 0.
	// Default 1.
	Epochs float64 `yaml:"epochs"`
	// MaxSteps is the number of optimizer steps, >= 0; 0 means use Epochs, and when > 0 it
	// wins over Epochs. Default 0.
	MaxSteps int `yaml:"max_steps"`
	// MicroBatchSize is the examples per forward/backward pass on one worker, > 0. Default 4.
	MicroBatchSize int `yaml:"micro_batch_size"`
	// GradAccum is the micro-batches accumulated per optimizer step on one worker, > 0.
	// Default 1.
	GradAccum int `yaml:"grad_accum"`
	// GlobalBatchSize is the examples per optimizer step across all workers, >= 0;
	// 0 means micro_batch_size × grad_accum × workers. When set it must be divisible by
	// micro_batch_size. Default 0.
	GlobalBatchSize int `yaml:"global_batch_size"`
	// LR is the peak learning rate, > 0. Default 2e-4.
	LR float64 `yaml:"lr"`
	// Scheduler is the learning-rate schedule after warmup: constant, linear or cosine
	// (both decay to 0). Default cosine.
	Scheduler string `yaml:"scheduler"`
	// WarmupSteps of linear warmup, >= 0; must be less than max_steps when that is set.
	// Default 0.
	WarmupSteps int `yaml:"warmup_steps"`
	// WarmupRatio is warmup as a fraction of all steps, in [0, 1). Setting both
	// warmup_steps and warmup_ratio above 0 is an error. Default 0.
	WarmupRatio float64 `yaml:"warmup_ratio"`
	// WeightDecay of AdamW, >= 0. Default 0.
	WeightDecay float64 `yaml:"weight_decay"`
	// AdamBeta1 of AdamW, in [0, 1). Default 0.9.
	AdamBeta1 float64 `yaml:"adam_beta1"`
	// AdamBeta2 of AdamW, in [0, 1). Default 0.999.
	AdamBeta2 float64 `yaml:"adam_beta2"`
	// AdamEps of AdamW, > 0. Default 1e-8.
	AdamEps float64 `yaml:"adam_eps"`
	// MaxGradNorm clips the global gradient norm, >= 0; 0 turns clipping off. Default 1.
	MaxGradNorm float64 `yaml:"max_grad_norm"`
	// Seed for adapter initialization, dropout and data order. Default 42.
	Seed int `yaml:"seed"`
	// CheckpointEvery saves an adapter checkpoint every this many steps, >= 0; 0 saves only
	// at the end. Default 0.
	CheckpointEvery int `yaml:"checkpoint_every"`
	// EvalEvery evaluates on the eval set every this many steps, >= 0; 0 never evaluates
	// during training. Needs dataset.eval or dataset.eval_split. Default 0.
	EvalEvery int `yaml:"eval_every"`
	// LogEvery logs loss and throughput every this many steps, > 0. Default 1.
	LogEvery int `yaml:"log_every"`
	// Threads is libtorch's intra-op thread count per worker, >= 0; 0 keeps libtorch's
	// default. Default 0.
	Threads int `yaml:"threads"`
	// Autocast runs the forward pass in lower precision: none or bf16. bf16 needs
	// model.dtype float32 or bfloat16. Default none.
	Autocast string `yaml:"autocast"`
}

// Scoring is batched evaluation or inference, fanned out to the workers.
type Scoring struct {
	// Data is the JSONL file scored. Default dataset.eval.
	Data string `yaml:"data"`
	// Task is what is computed per example: loss (token cross-entropy of the reference),
	// generate (free generation), multiple_choice (lowest-loss choice) or classification
	// (lowest-loss label). Default loss.
	Task string `yaml:"task"`
	// BatchSize is the examples per scoring batch, > 0. Default 8.
	BatchSize int `yaml:"batch_size"`
	// Metrics to report: a subset of loss, perplexity, exact_match, accuracy, f1, rouge_l,
	// bleu, without duplicates. exact_match, f1, rouge_l and bleu need task generate;
	// accuracy needs task generate, multiple_choice or classification.
	// Default [loss, perplexity].
	Metrics []string `yaml:"metrics"`
	// Generation configures decoding for task generate.
	Generation Generation `yaml:"generation"`
	// OnRowError says what a row that cannot be scored does: fail (the job fails) or
	// record (the row gets an error field in predictions.jsonl). Default record.
	OnRowError string `yaml:"on_row_error"`
	// Labels are the label texts of task classification, scored as continuations of
	// each row's text; a row may give its own in a "labels" field instead.
	Labels []string `yaml:"labels"`
}

// Generation configures decoding.
type Generation struct {
	// MaxNewTokens is the most tokens generated per example, > 0. Default 128.
	MaxNewTokens int `yaml:"max_new_tokens"`
	// Temperature of sampling, >= 0; 0 is greedy decoding. Default 0.
	Temperature float64 `yaml:"temperature"`
	// TopP keeps the smallest set of tokens whose probability reaches top_p, in (0, 1];
	// 1 keeps all. Default 1.
	TopP float64 `yaml:"top_p"`
	// TopK keeps the k most likely tokens, >= 0; 0 keeps all. Default 0.
	TopK int `yaml:"top_k"`
	// Seed of the sampler. Default 0.
	Seed int `yaml:"seed"`
	// Stop strings end generation early (the stop string is not part of the output).
	// Default none.
	Stop []string `yaml:"stop"`
}

// Cluster is how many workers a run uses and how they talk and fail.
type Cluster struct {
	// Workers is the number of data-parallel workers, >= 0; 0 takes all available.
	// Default 1.
	Workers int `yaml:"workers"`
	// MinWorkers is the fewest workers the run continues with after failures, >= 1 and
	// <= workers when workers > 0. Default 1.
	MinWorkers int `yaml:"min_workers"`
	// MaxWorkers caps the workers when workers is 0, >= 0; 0 is unbounded. When set it
	// must be >= min_workers and >= workers. Default 0.
	MaxWorkers int `yaml:"max_workers"`
	// AllReduce is the gradient all-reduce algorithm: auto, rsag (reduce-scatter then
	// all-gather) or direct (everyone sends to everyone). Default auto.
	AllReduce string `yaml:"allreduce"`
	// Compression of gradients on the wire: none, bf16 or fp16. Default none.
	Compression string `yaml:"compression"`
	// Timeout after which a silent worker is declared dead, a duration such as "30s",
	// > 0. Default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// Heartbeat is the interval of worker heartbeats, > 0 and < timeout. Default 2s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// MaxRestarts is how many times the run regroups after worker failures before it
	// fails, >= 0. Default 10.
	MaxRestarts int `yaml:"max_restarts"`
}

// Telemetry is where traces, metrics and logs go.
type Telemetry struct {
	// OTLPEndpoint receives traces and metrics over OTLP, e.g. "localhost:4317"; empty
	// turns OTLP export off. Default empty.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// OTLPProtocol is grpc or http. Default grpc.
	OTLPProtocol string `yaml:"otlp_protocol"`
	// SampleRatio is the fraction of traces sampled at the root, in [0, 1]. Default 1.
	SampleRatio float64 `yaml:"sample_ratio"`
	// TraceFile also writes spans as JSON lines to this file; empty turns it off.
	// Default empty.
	TraceFile string `yaml:"trace_file"`
	// MetricsAddr serves Prometheus metrics on host:port (port may be 0 for any); empty
	// turns it off. Default empty.
	MetricsAddr string `yaml:"metrics_addr"`
	// LogFormat is text or json. Default text.
	LogFormat string `yaml:"log_format"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
}

// Default returns the configuration every YAML file is laid over. RunName, OutputDir and
// Scoring.Data are left empty: Parse derives them from the file name, run_name and
// dataset.eval. Model.Path and Dataset.Train have no default and must be set.
func Default() Config {
	return Config{
		Model: Model{
			Revision:     "main",
			DType:        "bfloat16",
			Quantization: "none",
			DoubleQuant:  true,
		},
		LoRA: LoRA{
			R:             16,
			Alpha:         32,
			Dropout:       0.05,
			TargetModules: []string{"q_proj", "k_proj", "v_proj", "o_proj"},
		},
		Dataset: Dataset{
			Format: "completion",
			Fields: Fields{
				Text:        "text",
				Instruction: "instruction",
				Input:       "input",
				Output:      "output",
				Messages:    "messages",
				ID:          "id",
			},
			MaxSeqLen:  2048,
			Truncation: "right",
			OnError:    "fail",
		},
		Training: Training{
			Epochs:         1,
			MicroBatchSize: 4,
			GradAccum:      1,
			LR:             2e-4,
			Scheduler:      "cosine",
			AdamBeta1:      0.9,
			AdamBeta2:      0.999,
			AdamEps:        1e-8,
			MaxGradNorm:    1.0,
			Seed:           42,
			LogEvery:       1,
			Autocast:       "none",
		},
		Scoring: Scoring{
			Task:       "loss",
			BatchSize:  8,
			Metrics:    []string{"loss", "perplexity"},
			Generation: Generation{MaxNewTokens: 128, TopP: 1},
			OnRowError: "record",
		},
		Cluster: Cluster{
			Workers:     1,
			MinWorkers:  1,
			AllReduce:   "auto",
			Compression: "none",
			Timeout:     30 * time.Second,
			Heartbeat:   2 * time.Second,
			MaxRestarts: 10,
		},
		Telemetry: Telemetry{
			OTLPProtocol: "grpc",
			SampleRatio:  1,
			LogFormat:    "text",
			LogLevel:     "info",
		},
	}
}

// Load reads the YAML file at path and returns its effective configuration; see Parse.
func Load(path string, sets []string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configs: read config: %w", err)
	}
	return Parse(data, path, sets)
}

// Parse returns the effective configuration of a YAML document: Default, overlaid with
// the document, then with each `--set path=value` in sets (later ones win), then the
// derived defaults, then Validate. name labels error messages (file:line) and gives the
// default run_name. On failure the error lists every problem at once, each a *FieldError
// (see Problems); no partial Config is returned.
func Parse(data []byte, name string, sets []string) (*Config, error) {
	c := Default()
	c.RunName = runNameFrom(name)
	d := &decoder{file: name, src: newSources(name)}
	root := d.parse(data)
	if root == nil {
		// The document is unreadable, so field checks would only add noise; still check
		// the overrides so that they are all reported in this run.
		d.applySets(yamlMapping(), sets)
		return nil, joinProblems(d.problems)
	}
	d.applySets(root, sets)
	d.decodeStruct(root, "", &c)
	c.src = d.src
	c.resolve()
	probs := d.problems
	for _, p := range c.validate() {
		if !d.failed(p.Path) {
			probs = append(probs, p)
		}
	}
	if len(probs) > 0 {
		return nil, joinProblems(probs)
	}
	return &c, nil
}

// resolve fills the defaults that depend on other fields. It runs after the overrides so
// that `--set run_name=x` also moves the output folder.
func (c *Config) resolve() {
	if c.OutputDir == "" && c.RunName != "" {
		c.OutputDir = filepath.ToSlash(filepath.Join("artifacts", c.RunName))
	}
	if c.Scoring.Data == "" {
		c.Scoring.Data = c.Dataset.Eval
	}
}

// runNameFrom derives a run name from a config file name: the base name without
// extension, with characters that do not belong in a folder name replaced by '-'.
func runNameFrom(name string) string {
	base := filepath.Base(name)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	var b strings.Builder
	for _, r := range base {
		if isRunNameRune(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.TrimLeft(b.String(), "-._")
	if len(s) > maxRunName {
		s = s[:maxRunName]
	}
	if s == "" {
		return "run"
	}
	return s
}

const maxRunName = 128

func isRunNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		r == '-' || r == '_' || r == '.'
}

// Modules returns the target modules with all-linear expanded to the seven projections.
func (l LoRA) Modules() []string {
	if len(l.TargetModules) == 1 && l.TargetModules[0] == allLinear {
		return append([]string(nil), targetModules...)
	}
	return append([]string(nil), l.TargetModules...)
}
