package scoring

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/herdml/herd/configs"
)

// Tasks, as in the scoring.task config field.
const (
	TaskLoss           = "loss"            // token cross-entropy of each row's target
	TaskGenerate       = "generate"        // free generation from each row's prompt
	TaskMultipleChoice = "multiple_choice" // the choice with the highest log-likelihood
	TaskClassification = "classification"  // the label with the highest log-likelihood
)

// Metric names, as in the scoring.metrics config field, plus the companions
// reported with them (exact_match_raw with exact_match, accuracy_norm with
// accuracy for multiple_choice and classification).
const (
	MetricLoss          = "loss"
	MetricPerplexity    = "perplexity"
	MetricExactMatch    = "exact_match"
	MetricExactMatchRaw = "exact_match_raw"
	MetricAccuracy      = "accuracy"
	MetricAccuracyNorm  = "accuracy_norm"
	MetricF1            = "f1"
	MetricRougeL        = "rouge_l"
	MetricBLEU          = "bleu"
)

// NoChoice is the Choice, ChoiceNorm or Gold of a row that has none.
const NoChoice = -1

// Prediction is what a worker returns for one row. The fields a task does not
// use are ignored. It doubles as the wire form of a batch result.
type Prediction struct {
	// Index is the row's 0-based position in the input file.
	Index int64 `json:"index"`
	// ID is the input row's id field, "" when it has none (the row index is
	// written instead).
	ID string `json:"id,omitempty"`
	// LossSum is the summed token cross-entropy (natural log) over the Tokens
	// scored target tokens.
	LossSum float64 `json:"loss_sum,omitempty"`
	// Tokens is the number of target tokens scored, >= 0.
	Tokens int `json:"tokens,omitempty"`
	// Output is the generated text (task generate).
	Output string `json:"output,omitempty"`
	// Refs are the reference texts the output is compared with (task generate):
	// several references count as alternatives (max over references for exact
	// match, F1 and ROUGE-L; all together for BLEU).
	Refs []string `json:"refs,omitempty"`
	// ChoiceLoss is the summed token cross-entropy of each candidate
	// continuation (the choices of multiple_choice, the labels of
	// classification). When set, Choice and ChoiceNorm are derived from it.
	ChoiceLoss []float64 `json:"choice_loss,omitempty"`
	// ChoiceLen is the length in characters (code points) of each candidate,
	// for the length-normalised choice. Optional.
	ChoiceLen []int `json:"choice_len,omitempty"`
	// Choice is the predicted candidate index, or NoChoice; derived from
	// ChoiceLoss when that is set.
	Choice int `json:"choice"`
	// ChoiceNorm is the predicted candidate index under length normalisation,
	// or NoChoice; derived from ChoiceLoss and ChoiceLen when both are set.
	ChoiceNorm int `json:"choice_norm"`
	// Label is the predicted label's text (classification), optional.
	Label string `json:"label,omitempty"`
	// Gold is the index of the correct candidate, or NoChoice when unknown.
	Gold int `json:"gold"`
	// Error says why the row could not be scored; such a row enters no metric.
	Error string `json:"error,omitempty"`
}

// UnmarshalJSON decodes a prediction in its wire form; an absent choice,
// choice_norm or gold decodes as NoChoice (not as index 0).
func (p *Prediction) UnmarshalJSON(b []byte) error {
	type plain Prediction
	q := plain{Choice: NoChoice, ChoiceNorm: NoChoice, Gold: NoChoice}
	if err := json.Unmarshal(b, &q); err != nil {
		return err
	}
	*p = Prediction(q)
	return nil
}

// Resolve derives Choice and ChoiceNorm from ChoiceLoss and ChoiceLen:
// Choice is the candidate with the lowest summed loss (highest
// log-likelihood), ChoiceNorm the one with the lowest loss per character
// (lm-evaluation-harness's acc_norm; a candidate of length 0 counts as 1).
// NaN losses never win; ties go to the lower index. Without ChoiceLoss it
// leaves the fields alone.
func (p *Prediction) Resolve() {
	if len(p.ChoiceLoss) == 0 {
		return
	}
	p.Choice = argmin(p.ChoiceLoss, nil)
	if len(p.ChoiceLen) == len(p.ChoiceLoss) {
		p.ChoiceNorm = argmin(p.ChoiceLoss, p.ChoiceLen)
	} else {
		p.ChoiceNorm = NoChoice
	}
}

func argmin(loss []float64, lens []int) int {
	best, bestV := NoChoice, 0.0
	for i, l := range loss {
		v := l
		if lens != nil {
			v = l / float64(max(lens[i], 1))
		}
		if math.IsNaN(v) {
			continue
		}
		if best == NoChoice || v < bestV {
			best, bestV = i, v
		}
	}
	return best
}

// Loss is the row's mean token cross-entropy LossSum/Tokens, and false when
// no token was scored.
func (p *Prediction) Loss() (float64, bool) {
	if p.Tokens <= 0 {
		return 0, false
	}
	return p.LossSum / float64(p.Tokens), true
}

// outputRow is one line of predictions.jsonl.
type outputRow struct {
	ID         json.RawMessage `json:"id"`
	Loss       *float64        `json:"loss,omitempty"`
	NTokens    *int            `json:"n_tokens,omitempty"`
	Output     *string         `json:"output,omitempty"`
	Choice     *int            `json:"choice,omitempty"`
	ChoiceNorm *int            `json:"choice_norm,omitempty"`
	Label      string          `json:"label,omitempty"`
	Gold       *int            `json:"gold,omitempty"`
	Correct    *bool           `json:"correct,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// MarshalRow is p's line of predictions.jsonl for task (without the newline):
// id (the input id as a string, or the row index as a number), loss (mean
// token cross-entropy; absent when no token was scored or it is not finite),
// n_tokens, output (generate), choice, choice_norm (when derived), label, gold
// and correct (multiple_choice, classification; gold and correct only when
// the gold is known), and error for a row that failed (then only id and
// error).
func MarshalRow(task string, p *Prediction) ([]byte, error) {
	var r outputRow
	if p.ID != "" {
		r.ID, _ = json.Marshal(p.ID)
	} else {
		r.ID = strconv.AppendInt(nil, p.Index, 10)
	}
	if p.Error != "" {
		r.Error = p.Error
		return json.Marshal(&r)
	}
	n := p.Tokens
	r.NTokens = &n
	if l, ok := p.Loss(); ok && !math.IsInf(l, 0) && !math.IsNaN(l) {
		r.Loss = &l
	}
	switch task {
	case TaskGenerate:
		o := p.Output
		r.Output = &o
	case TaskMultipleChoice, TaskClassification:
		c := p.Choice
		r.Choice = &c
		if len(p.ChoiceLoss) > 0 && p.ChoiceNorm != NoChoice {
			cn := p.ChoiceNorm
			r.ChoiceNorm = &cn
		}
		r.Label = p.Label
		if p.Gold != NoChoice {
			g := p.Gold
			ok := p.Choice == p.Gold
			r.Gold, r.Correct = &g, &ok
		}
	}
	return json.Marshal(&r)
}

// Spec is the scoring configuration a job runs with, in the names of the
// scoring config section; metrics.json repeats it.
type Spec struct {
	Data       string         `json:"data,omitempty"`
	Task       string         `json:"task"`
	BatchSize  int            `json:"batch_size,omitempty"`
	Metrics    []string       `json:"metrics"`
	Generation *GenerationCfg `json:"generation,omitempty"`
	OnRowError string         `json:"on_row_error,omitempty"`
}

// GenerationCfg is scoring.generation.
type GenerationCfg struct {
	MaxNewTokens int      `json:"max_new_tokens"`
	Temperature  float64  `json:"temperature"`
	TopP         float64  `json:"top_p"`
	TopK         int      `json:"top_k"`
	Seed         int      `json:"seed"`
	Stop         []string `json:"stop,omitempty"`
}

// SpecFromConfig is the Spec of a scoring config section; the generation
// settings are kept for task generate only.
func SpecFromConfig(c configs.Scoring) Spec {
	s := Spec{Data: c.Data, Task: c.Task, BatchSize: c.BatchSize, Metrics: append([]string(nil), c.Metrics...), OnRowError: c.OnRowError}
	if c.Task == TaskGenerate {
		g := c.Generation
		s.Generation = &GenerationCfg{MaxNewTokens: g.MaxNewTokens, Temperature: g.Temperature, TopP: g.TopP, TopK: g.TopK, Seed: g.Seed, Stop: append([]string(nil), g.Stop...)}
	}
	return s
}
