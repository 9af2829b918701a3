package dataset

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/herdml/herd/configs"
	"github.com/herdml/herd/dataset/tokenizer"
)

// Tokenizer is what the data pipeline needs from a tokenizer;
// *tokenizer.Tokenizer implements it.
type Tokenizer interface {
	// Encode returns the ids of text; addSpecial applies the post-processor
	// (BOS/EOS).
	Encode(text string, addSpecial bool) ([]int, error)
	// Decode returns the text of ids (Inspect uses it).
	Decode(ids []int, skipSpecial bool) (string, error)
	// Special returns the BOS/EOS/PAD/UNK tokens (-1 where absent).
	Special() tokenizer.SpecialTokens
	// ApplyChatTemplate renders messages with the chat template (chat format).
	ApplyChatTemplate(messages []tokenizer.Message, addGenerationPrompt bool) (string, error)
}

var _ Tokenizer = (*tokenizer.Tokenizer)(nil)

// The Alpaca prompt templates (tatsu-lab/stanford_alpaca), with and without
// the optional input. The response follows "### Response:\n" directly.
const (
	AlpacaPromptInput = "Below is an instruction that describes a task, paired with an input that provides further context. " +
		"Write a response that appropriately completes the request.\n\n" +
		"### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
	AlpacaPromptNoInput = "Below is an instruction that describes a task. " +
		"Write a response that appropriately completes the request.\n\n" +
		"### Instruction:\n{instruction}\n\n### Response:\n"
)

// AlpacaPrompt renders the Alpaca prompt of an instruction and its optional
// input (empty input: the template without the Input section).
func AlpacaPrompt(instruction, input string) string {
	if input == "" {
		return strings.Replace(AlpacaPromptNoInput, "{instruction}", instruction, 1)
	}
	r := strings.NewReplacer("{instruction}", instruction, "{input}", input)
	return r.Replace(AlpacaPromptInput)
}

// span is a trained range of bytes [start, end) of a rendered text.
type span struct{ start, end int }

// rendered is a row as the text the model sees and the parts of it trained on.
type rendered struct {
	text  string
	spans []span // sorted, disjoint, non-empty
	// chat texts come from the chat template, which writes BOS and end-of-turn
	// tokens itself: the encoder adds no special tokens to them.
	chat bool
}

// formatter renders rows in one of the formats.
type formatter struct {
	format        string
	fields        configs.Fields
	trainOnPrompt bool
	tok           Tokenizer

	trailerOnce sync.Once
	trailer     string // what the chat template renders for no message at all
}

// chatTrailer returns what the template writes after any conversation,
// whatever add_generation_prompt says (Llama 3 base's template always ends
// with the assistant header): the rendering of an empty conversation less a
// leading BOS, when the whole rendering ends but does not start with it.
func (f *formatter) chatTrailer(full string) string {
	f.trailerOnce.Do(func() {
		f.trailer, _ = f.tok.ApplyChatTemplate(nil, false)
		if b := f.tok.Special().BOSToken; b != "" {
			f.trailer = strings.TrimPrefix(f.trailer, b)
		}
	})
	if t := f.trailer; t != "" && strings.HasSuffix(full, t) && !strings.HasPrefix(full, t) {
		return t
	}
	return ""
}

func newFormatter(d configs.Dataset, tok Tokenizer) (*formatter, error) {
	switch d.Format {
	case "completion", "instruction", "chat":
	default:
		return nil, errors.New(`dataset: format must be completion, instruction or chat, got "` + d.Format + `"`)
	}
	return &formatter{format: d.Format, fields: d.Fields, trainOnPrompt: d.TrainOnPrompt, tok: tok}, nil
}

func (f *formatter) render(row Row) (rendered, error) {
	switch f.format {
	case "completion":
		text, err := stringField(row, f.fields.Text, true)
		if err != nil {
			return rendered{}, err
		}
		return rendered{text: text, spans: []span{{0, len(text)}}}, nil
	case "instruction":
		return f.renderInstruction(row)
	default:
		return f.renderChat(row)
	}
}

func (f *formatter) renderInstruction(row Row) (rendered, error) {
	instr, err := stringField(row, f.fields.Instruction, true)
	if err != nil {
		return rendered{}, err
	}
	input, err := stringField(row, f.fields.Input, false)
	if err != nil {
		return rendered{}, err
	}
	output, err := stringField(row, f.fields.Output, true)
	if err != nil {
		return rendered{}, err
	}
	prompt := AlpacaPrompt(instr, input)
	text := prompt + output
	start := len(prompt)
	if f.trainOnPrompt {
		start = 0
	}
	return rendered{text: text, spans: []span{{start, len(text)}}}, nil
}

// renderChat renders the conversation with the chat template and finds each
// assistant turn by rendering prefixes of the conversation: turn i starts
// where render(messages[:i], add_generation_prompt=true) ends and ends where
// render(messages[:i+1]) ends, both of which must be prefixes of the whole
// rendering (a trailer the template writes after every conversation is not
// part of the turn). The trained span is thus the turn's content and whatever the
// template writes after it (end-of-turn token, EOS), but not the header.
func (f *formatter) renderChat(row Row) (rendered, error) {
	msgs, err := f.messages(row)
	if err != nil {
		return rendered{}, err
	}
	full, err := f.tok.ApplyChatTemplate(msgs, false)
	if err != nil {
		return rendered{}, &RowError{Src: row.Src, Reason: "chat template", Err: errors.Join(ErrChatTemplate, err)}
	}
	r := rendered{text: full, chat: true}
	if f.trainOnPrompt {
		if full != "" {
			r.spans = []span{{0, len(full)}}
		}
		return r, nil
	}
	for i, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		start, err := f.prefixEnd(msgs[:i], true, full)
		if err != nil {
			if i > 0 {
				return rendered{}, f.prefixErr(row, i, err)
			}
			start = 0 // some templates refuse an empty conversation
		}
		end, err := f.turnEnd(msgs[:i+1], full)
		if err != nil {
			return rendered{}, f.prefixErr(row, i+1, err)
		}
		if end > start {
			r.spans = append(r.spans, span{start, end})
		}
	}
	if len(r.spans) == 0 {
		return rendered{}, rowErr(row.Src, "field %q has no assistant message to train on (dataset.train_on_prompt trains on every message)", f.fields.Messages)
	}
	return r, nil
}

var errNotPrefix = errors.New("not a prefix of the whole conversation")

// prefixEnd renders msgs and returns its length when it is a prefix of full.
// With gen, the rendering with the generation prompt is tried first, then
// the one without (templates that ignore add_generation_prompt).
func (f *formatter) prefixEnd(msgs []tokenizer.Message, gen bool, full string) (int, error) {
	s, err := f.tok.ApplyChatTemplate(msgs, gen)
	if err != nil {
		return 0, err
	}
	if strings.HasPrefix(full, s) {
		return len(s), nil
	}
	if gen {
		if s, err := f.tok.ApplyChatTemplate(msgs, false); err == nil && strings.HasPrefix(full, s) {
			return len(s), nil
		}
	}
	return 0, errNotPrefix
}

// turnEnd is where the last of msgs ends in full: the end of its rendering,
// less the template's unconditional trailer.
func (f *formatter) turnEnd(msgs []tokenizer.Message, full string) (int, error) {
	s, err := f.tok.ApplyChatTemplate(msgs, false)
	if err != nil {
		return 0, err
	}
	if t := f.chatTrailer(full); t != "" {
		s = strings.TrimSuffix(s, t)
	}
	if !strings.HasPrefix(full, s) {
		return 0, errNotPrefix
	}
	return len(s), nil
}

func (f *formatter) prefixErr(row Row, n int, err error) error {
	return &RowError{Src: row.Src,
		Reason: "cannot find the assistant turns: the chat template's rendering of the first " + itoa(n) +
			" messages is not a prefix of the whole conversation's (herd needs a prefix-stable template; see docs/datasets.md)",
		Err: errors.Join(ErrChatTemplate, err)}
}

// messages reads the chat column: a list of {role, content} objects, or (CSV)
// a string holding that list as JSON.
func (f *formatter) messages(row Row) ([]tokenizer.Message, error) {
	name := f.fields.Messages
	v, ok := row.Fields[name]
	if !ok {
		return nil, rowErr(row.Src, "field %q missing", name)
	}
	if s, isStr := v.(string); isStr {
		d := json.NewDecoder(strings.NewReader(s))
		if err := d.Decode(&v); err != nil {
			return nil, &RowError{Src: row.Src, Reason: "field " + quote(name) + " is a string that is not a JSON list of messages", Err: err}
		}
	}
	list, ok := v.([]any)
	if !ok {
		return nil, rowErr(row.Src, "field %q is %s, want a list of {role, content} messages", name, jsonKind(v))
	}
	if len(list) == 0 {
		return nil, rowErr(row.Src, "field %q is empty", name)
	}
	msgs := make([]tokenizer.Message, len(list))
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, rowErr(row.Src, "%s[%d] is %s, want a {role, content} object", name, i, jsonKind(e))
		}
		for _, k := range [...]string{"role", "content"} {
			s, ok := m[k].(string)
			if !ok {
				if _, present := m[k]; !present {
					return nil, rowErr(row.Src, "%s[%d].%s missing", name, i, k)
				}
				return nil, rowErr(row.Src, "%s[%d].%s is %s, want a string", name, i, k, jsonKind(m[k]))
			}
			if k == "role" {
				if s == "" {
					return nil, rowErr(row.Src, "%s[%d].role is empty", name, i)
				}
				msgs[i].Role = s
			} else {
				msgs[i].Content = s
			}
		}
	}
	return msgs, nil
}

// stringField returns a string column. A required field must be present,
// a string and not empty; an optional one may be absent, null or empty.
func stringField(row Row, name string, required bool) (string, error) {
	v, ok := row.Fields[name]
	if !ok || v == nil {
		if !required {
			return "", nil
		}
		if ok {
			return "", rowErr(row.Src, "field %q is null", name)
		}
		return "", rowErr(row.Src, "field %q missing", name)
	}
	s, ok := v.(string)
	if !ok {
		return "", rowErr(row.Src, "field %q is %s, want a string", name, jsonKind(v))
	}
	if required && strings.TrimSpace(s) == "" {
		return "", rowErr(row.Src, "field %q is empty", name)
	}
	return s, nil
}

func quote(s string) string { return strconv.Quote(s) }

func itoa(n int) string { return strconv.Itoa(n) }
