package scorerun

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/herdml/herd/dataset"
	"github.com/herdml/herd/dataset/tokenizer"
)

// prepareChoices reads multiple-choice rows: {"question": str, "choices":
// [str...], "answer": index}. Each choice is scored as the continuation of
// the question, tokenized the way lm-evaluation-harness does: encode the
// whole text; the scored tokens are those after its common prefix with the
// question's own encoding.
func prepareChoices(file string, tok *tokenizer.Tokenizer, ids []string) ([]Task, error) {
	var out []Task
	err := eachRow(file, func(row dataset.Row, rowErr error) error {
		if rowErr != nil {
			return rowErr
		}
		where := row.Src.String()
		q, ok := row.Fields["question"].(string)
		if !ok {
			return fmt.Errorf("%s: field \"question\" must be a string", where)
		}
		raw, ok := row.Fields["choices"].([]any)
		if !ok || len(raw) < 2 {
			return fmt.Errorf("%s: field \"choices\" must be a list of at least two strings", where)
		}
		ans, ok := asInt(row.Fields["answer"])
		if !ok || ans < 0 || ans >= len(raw) {
			return fmt.Errorf("%s: field \"answer\" must be the index of the right choice (0..%d)", where, len(raw)-1)
		}
		ctx, err := tok.Encode(q, true)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		t := Task{Index: int64(len(out)), ID: strconv.Itoa(len(out)), Prompt: toInt64(ctx), Gold: ans}
		if i := len(out); i < len(ids) && ids[i] != "" {
			t.ID = ids[i]
		}
		for c, v := range raw {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("%s: choices[%d] must be a string", where, c)
			}
			whole, err := tok.Encode(q+s, true)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			n := commonPrefix(whole, ctx)
			if n == len(whole) {
				return fmt.Errorf("%s: choices[%d] adds no token to the question", where, c)
			}
			t.Choices = append(t.Choices, toInt64(whole))
			t.ChoiceStart = append(t.ChoiceStart, n)
			t.ChoiceChars = append(t.ChoiceChars, len([]rune(s)))
		}
		out = append(out, t)
		return nil
	})
	return out, err
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
