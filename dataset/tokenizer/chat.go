package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ardanlabs/jinja"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ErrNoChatTemplate is returned by ApplyChatTemplate when
// tokenizer_config.json has no chat template.
var ErrNoChatTemplate = errors.New("tokenizer: no chat_template in tokenizer_config.json (or chat_template.jinja)")

type compiledTemplate struct {
	tpl *jinja.Template
	err error
}

// parseChatTemplates reads chat_template: a string, or a list of
// {"name", "template"} objects.
func parseChatTemplates(raw json.RawMessage) (map[string]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return map[string]string{"default": s}, nil
	}
	var list []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("want a string or a list of {name, template}")
	}
	m := make(map[string]string, len(list))
	for _, e := range list {
		m[e.Name] = e.Template
	}
	return m, nil
}

// ChatTemplate returns the source of the named chat template ("default" is
// the one ApplyChatTemplate uses).
func (t *Tokenizer) ChatTemplate(name string) (string, bool) {
	s, ok := t.chatTemplates[name]
	return s, ok
}

// ApplyChatTemplate renders the default chat template of
// tokenizer_config.json with messages, add_generation_prompt, bos_token and
// eos_token, as transformers' apply_chat_template(tokenize=False) does. The
// template may call raise_exception(msg), which becomes an error. Encode the
// result with addSpecial=false: templates write BOS themselves.
func (t *Tokenizer) ApplyChatTemplate(messages []Message, addGenerationPrompt bool) (string, error) {
	return t.applyChatTemplate("default", messages, addGenerationPrompt)
}

func (t *Tokenizer) applyChatTemplate(name string, messages []Message, addGenerationPrompt bool) (string, error) {
	src, ok := t.chatTemplates[name]
	if !ok {
		if len(t.chatTemplates) == 0 {
			return "", ErrNoChatTemplate
		}
		return "", fmt.Errorf("tokenizer: no chat template named %q", name)
	}
	v, _ := t.chatOnce.Load(name)
	ct, _ := v.(*compiledTemplate)
	if ct == nil {
		tpl, err := jinja.Compile(src)
		ct = &compiledTemplate{tpl: tpl, err: err}
		t.chatOnce.Store(name, ct)
	}
	if ct.err != nil {
		return "", fmt.Errorf("tokenizer: chat template %q: %w", name, ct.err)
	}
	msgs := make([]any, len(messages))
	for i, m := range messages {
		msgs[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	out, err := ct.tpl.Render(map[string]any{
		"messages":              msgs,
		"add_generation_prompt": addGenerationPrompt,
		"bos_token":             t.specialTokens.BOSToken,
		"eos_token":             t.specialTokens.EOSToken,
		"pad_token":             t.specialTokens.PADToken,
		"unk_token":             t.specialTokens.UNKToken,
	})
	if err != nil {
		return "", fmt.Errorf("tokenizer: chat template %q: %w", name, err)
	}
	return out, nil
}
