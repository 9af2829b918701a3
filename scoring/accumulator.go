package scoring

import (
	"encoding/json"
	"math"
	"slices"
	"sync"
)

// Counts are the row and batch tallies reported next to the metrics.
type Counts struct {
	// Rows is the number of predictions added (each row once, when the merger
	// feeds the accumulator).
	Rows int64 `json:"rows"`
	// RowsWithErrors is the rows that carry an error and enter no metric.
	RowsWithErrors int64 `json:"rows_with_errors"`
	// Tokens is the target tokens scored, summed over rows without errors.
	Tokens int64 `json:"tokens"`
	// Batches is the batch results accepted (set by the Merger).
	Batches int64 `json:"batches"`
	// DuplicatesDropped is the batch results dropped because their batch had
	// already been accepted (set by the Merger).
	DuplicatesDropped int64 `json:"duplicates_dropped"`
}

// Result is a metrics snapshot.
type Result struct {
	// Metrics maps metric names to values. A metric with nothing to average
	// over (no scored token, no row with a reference or a gold answer) is
	// absent.
	Metrics map[string]float64 `json:"metrics"`
	Counts  Counts             `json:"counts"`
}

// accState is the accumulator's sufficient statistics. Every field is a sum
// over rows, so two states merge by adding them, exactly.
type accState struct {
	Rows     int64    `json:"rows"`
	Errors   int64    `json:"errors"`
	Tokens   int64    `json:"tokens"`
	LossSum  exactSum `json:"loss_sum"`
	RefRows  int64    `json:"ref_rows"`
	EM       int64    `json:"em"`
	EMRaw    int64    `json:"em_raw"`
	F1Sum    exactSum `json:"f1_sum"`
	RougeSum exactSum `json:"rouge_sum"`
	// BLEURows is the rows with at least one non-empty reference.
	BLEURows  int64     `json:"bleu_rows"`
	BLEU      BLEUStats `json:"bleu"`
	GoldRows  int64     `json:"gold_rows"`
	Correct   int64     `json:"correct"`
	NormRows  int64     `json:"norm_rows"`
	CorrectNm int64     `json:"correct_norm"`
}

func (s *accState) merge(o *accState) {
	s.Rows += o.Rows
	s.Errors += o.Errors
	s.Tokens += o.Tokens
	s.LossSum.Merge(&o.LossSum)
	s.RefRows += o.RefRows
	s.EM += o.EM
	s.EMRaw += o.EMRaw
	s.F1Sum.Merge(&o.F1Sum)
	s.RougeSum.Merge(&o.RougeSum)
	s.BLEURows += o.BLEURows
	s.BLEU.Merge(&o.BLEU)
	s.GoldRows += o.GoldRows
	s.Correct += o.Correct
	s.NormRows += o.NormRows
	s.CorrectNm += o.CorrectNm
}

func (s *accState) clone() accState {
	c := *s
	c.LossSum = s.LossSum.clone()
	c.F1Sum = s.F1Sum.clone()
	c.RougeSum = s.RougeSum.clone()
	c.BLEU.Correct = slices.Clone(s.BLEU.Correct)
	c.BLEU.Total = slices.Clone(s.BLEU.Total)
	return c
}

// Accumulator computes a task's metrics over predictions added one at a time
// or batch by batch, in any order; Result can be read at any time (partial
// metrics while a job runs) and Merge combines accumulators exactly, so
// metrics never depend on batching or arrival order. It does not deduplicate:
// add each row once (the Merger does). It is safe for concurrent use.
type Accumulator struct {
	task    string
	metrics []string

	mu sync.Mutex
	st accState
}

// DefaultMetrics are the metrics reported for a task when none are named.
func DefaultMetrics(task string) []string {
	switch task {
	case TaskGenerate:
		return []string{MetricExactMatch, MetricF1, MetricRougeL, MetricBLEU}
	case TaskMultipleChoice, TaskClassification:
		return []string{MetricAccuracy}
	default:
		return []string{MetricLoss, MetricPerplexity}
	}
}

// NewAccumulator starts an accumulator for task reporting metrics (the
// scoring.metrics names; empty takes DefaultMetrics). Companions are added:
// exact_match_raw with exact_match, accuracy_norm with accuracy.
func NewAccumulator(task string, metrics []string) *Accumulator {
	if len(metrics) == 0 {
		metrics = DefaultMetrics(task)
	}
	var ms []string
	for _, m := range metrics {
		if !slices.Contains(ms, m) {
			ms = append(ms, m)
		}
		var companion string
		switch m {
		case MetricExactMatch:
			companion = MetricExactMatchRaw
		case MetricAccuracy:
			if task == TaskMultipleChoice || task == TaskClassification {
				companion = MetricAccuracyNorm
			}
		}
		if companion != "" && !slices.Contains(ms, companion) {
			ms = append(ms, companion)
		}
	}
	return &Accumulator{task: task, metrics: ms}
}

func (a *Accumulator) wants(m string) bool { return slices.Contains(a.metrics, m) }

// Add adds one prediction. For multiple_choice and classification it
// resolves Choice from ChoiceLoss first (see Prediction.Resolve).
func (a *Accumulator) Add(p *Prediction) {
	var d accState
	a.rowStats(p, &d)
	a.mu.Lock()
	a.st.merge(&d)
	a.mu.Unlock()
}

// AddBatch adds predictions, as Add.
func (a *Accumulator) AddBatch(ps []Prediction) {
	var d accState
	for i := range ps {
		a.rowStats(&ps[i], &d)
	}
	a.mu.Lock()
	a.st.merge(&d)
	a.mu.Unlock()
}

// rowStats adds p's contribution to d. Text metrics are computed only when
// reported, as they cost more than the rest together.
func (a *Accumulator) rowStats(p *Prediction, d *accState) {
	d.Rows++
	if p.Error != "" {
		d.Errors++
		return
	}
	if p.Tokens > 0 {
		d.Tokens += int64(p.Tokens)
		d.LossSum.Add(p.LossSum)
	}
	switch a.task {
	case TaskGenerate:
		if len(p.Refs) == 0 {
			break
		}
		d.RefRows++
		if a.wants(MetricExactMatch) || a.wants(MetricAccuracy) {
			if ExactMatch(p.Output, p.Refs) {
				d.EM++
			}
		}
		if a.wants(MetricExactMatchRaw) && ExactMatchRaw(p.Output, p.Refs) {
			d.EMRaw++
		}
		if a.wants(MetricF1) {
			d.F1Sum.Add(TokenF1(p.Output, p.Refs))
		}
		if a.wants(MetricRougeL) {
			d.RougeSum.Add(RougeLMulti(p.Refs, p.Output).FMeasure)
		}
		if a.wants(MetricBLEU) && d.BLEU.Add(p.Output, p.Refs, nil) {
			d.BLEURows++
		}
	case TaskMultipleChoice, TaskClassification:
		p.Resolve()
		if p.Gold == NoChoice {
			break
		}
		d.GoldRows++
		if p.Choice == p.Gold {
			d.Correct++
		}
		if len(p.ChoiceLoss) > 0 && p.ChoiceNorm != NoChoice {
			d.NormRows++
			if p.ChoiceNorm == p.Gold {
				d.CorrectNm++
			}
		}
	}
}

// Merge adds o's statistics to a. o is read under its own lock first, so
// a.Merge(b) and b.Merge(a) may run at the same time.
func (a *Accumulator) Merge(o *Accumulator) {
	o.mu.Lock()
	st := o.st.clone()
	o.mu.Unlock()
	a.mu.Lock()
	a.st.merge(&st)
	a.mu.Unlock()
}

// Result computes the metrics from the statistics so far:
//
//	loss          = Σ LossSum / Σ Tokens over rows without errors (token-weighted)
//	perplexity    = exp(loss)
//	exact_match   = rows whose normalised output equals a normalised reference / rows with references
//	exact_match_raw = the same without normalisation
//	f1            = mean over rows with references of the SQuAD token F1 (max over references)
//	rouge_l       = mean over rows with references of the ROUGE-L F-measure (max over references)
//	bleu          = sacreBLEU corpus BLEU (0..100) from the summed statistics
//	accuracy      = rows with Choice == Gold / rows with a gold (generate: = exact_match)
//	accuracy_norm = rows with ChoiceNorm == Gold / rows with a gold and ChoiceLen
//
// All but bleu are fractions in [0, 1] (perplexity and loss excepted).
func (a *Accumulator) Result() Result {
	a.mu.Lock()
	st := a.st.clone()
	a.mu.Unlock()
	m := make(map[string]float64)
	frac := func(num, den int64) (float64, bool) {
		if den == 0 {
			return 0, false
		}
		return float64(num) / float64(den), true
	}
	for _, name := range a.metrics {
		var v float64
		ok := false
		switch name {
		case MetricLoss, MetricPerplexity:
			if st.Tokens > 0 {
				v, ok = st.LossSum.Value()/float64(st.Tokens), true
				if name == MetricPerplexity {
					v = math.Exp(v)
				}
			}
		case MetricExactMatch:
			v, ok = frac(st.EM, st.RefRows)
		case MetricExactMatchRaw:
			v, ok = frac(st.EMRaw, st.RefRows)
		case MetricF1:
			if st.RefRows > 0 {
				v, ok = st.F1Sum.Value()/float64(st.RefRows), true
			}
		case MetricRougeL:
			if st.RefRows > 0 {
				v, ok = st.RougeSum.Value()/float64(st.RefRows), true
			}
		case MetricBLEU:
			if st.BLEURows > 0 {
				v, ok = st.BLEU.Score(BLEUOptions{}).Score, true
			}
		case MetricAccuracy:
			if a.task == TaskGenerate {
				v, ok = frac(st.EM, st.RefRows)
			} else {
				v, ok = frac(st.Correct, st.GoldRows)
			}
		case MetricAccuracyNorm:
			v, ok = frac(st.CorrectNm, st.NormRows)
		}
		if ok {
			m[name] = v
		}
	}
	return Result{Metrics: m, Counts: Counts{Rows: st.Rows, RowsWithErrors: st.Errors, Tokens: st.Tokens}}
}

// accSnapshot is the serialised form of an Accumulator.
type accSnapshot struct {
	Task    string   `json:"task"`
	Metrics []string `json:"metrics"`
	State   accState `json:"state"`
}

// MarshalJSON serialises the accumulator's statistics exactly (for spool
// files and for persisting partial metrics); UnmarshalJSON restores them.
func (a *Accumulator) MarshalJSON() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return json.Marshal(accSnapshot{Task: a.task, Metrics: a.metrics, State: a.st})
}

// UnmarshalJSON replaces a's task, metrics and statistics with the
// serialised ones.
func (a *Accumulator) UnmarshalJSON(b []byte) error {
	var s accSnapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.task, a.metrics, a.st = s.Task, s.Metrics, s.State
	return nil
}
