package scorerun

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/dataset/tokenizer"
	"github.com/herdml/herd/scoring"
)

// prepareChoice reads a multiple-choice row: {"question": str, "choices":
// [str...], "answer": index or null}.
func prepareChoice(row dataset.Row, tok *tokenizer.Tokenizer, t *Task) error {
	q, ok := row.Fields["question"].(string)
	if !ok {
		return fmt.Errorf("field \"question\" must be a string")
	}
	choices, err := stringList(row.Fields["choices"], "choices")
	if err != nil {
		return err
	}
	if len(choices) < 2 {
		return fmt.Errorf("field \"choices\" must be a list of at least two strings")
	}
	gold := scoring.NoChoice
	if v, present := row.Fields["answer"]; present && v != nil {
		ans, ok := asInt(v)
		if !ok || ans < 0 || ans >= len(choices) {
			return fmt.Errorf("field \"answer\" must be the index of the right choice (0..%d) or null, got %v", len(choices)-1, v)
		}
		gold = ans
	}
	return candidates(tok, q, choices, gold, t)
}

// prepareClass reads a classification row: {"text": str, "label": str or
// index or null}, with the label set of scoring.labels or the row's
// "labels".
func prepareClass(row dataset.Row, tok *tokenizer.Tokenizer, labels []string, t *Task) error {
	text, ok := row.Fields["text"].(string)
	if !ok {
		return fmt.Errorf("field \"text\" must be a string")
	}
	if v, present := row.Fields["labels"]; present && v != nil {
		own, err := stringList(v, "labels")
		if err != nil {
			return err
		}
		labels = own
	}
	if len(labels) < 2 {
		return fmt.Errorf("classification needs at least two labels: set scoring.labels or the row's \"labels\"")
	}
	gold := scoring.NoChoice
	switch v := row.Fields["label"].(type) {
	case nil:
	case string:
		if gold = slices.Index(labels, v); gold < 0 {
			return fmt.Errorf("label %q is not one of %q", v, labels)
		}
	default:
		ans, ok := asInt(v)
		if !ok || ans < 0 || ans >= len(labels) {
			return fmt.Errorf("field \"label\" must be a label or its index (0..%d), got %v", len(labels)-1, v)
		}
		gold = ans
	}
	t.Candidates = labels
	return candidates(tok, text, labels, gold, t)
}

// candidates scores each candidate as the continuation of ctx, tokenized
// the way lm-evaluation-harness does: encode the whole text; the scored
// tokens are those after its common prefix with the context's own encoding.
// Context and candidate are joined by a space (the harness's default
// target_delimiter) unless one side already has whitespace there.
func candidates(tok *tokenizer.Tokenizer, ctx string, cands []string, gold int, t *Task) error {
	prefix, err := tok.Encode(ctx, true)
	if err != nil {
		return err
	}
	t.Prompt, t.Gold = toInt64(prefix), gold
	for c, s := range cands {
		whole, err := tok.Encode(join(ctx, s), true)
		if err != nil {
			return err
		}
		n := commonPrefix(whole, prefix)
		if n == len(whole) {
			return fmt.Errorf("candidate %d (%q) adds no token to the context", c, s)
		}
		t.Choices = append(t.Choices, toInt64(whole))
		t.ChoiceStart = append(t.ChoiceStart, n)
		t.ChoiceChars = append(t.ChoiceChars, utf8.RuneCountInString(s))
	}
	return nil
}

func join(ctx, cand string) string {
	r, _ := utf8.DecodeLastRuneInString(ctx)
	c, _ := utf8.DecodeRuneInString(cand)
	if ctx == "" || cand == "" || unicode.IsSpace(r) || unicode.IsSpace(c) {
		return ctx + cand
	}
	return ctx + " " + cand
}

func stringList(v any, field string) ([]string, error) {
	raw, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("field %q must be a list of strings", field)
	}
	out := make([]string, len(raw))
	for i, x := range raw {
		s, ok := x.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return nil, fmt.Errorf("%s[%d] must be a non-empty string", field, i)
		}
		out[i] = s
	}
	return out, nil
}

func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func toInt64(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// asInt reads an integer field, whatever number type the reader produced.
func asInt(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		return int(x), x == float64(int(x))
	case json.Number:
		n, err := x.Int64()
		return int(n), err == nil
	}
	return 0, false
}
