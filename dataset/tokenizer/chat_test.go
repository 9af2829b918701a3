package tokenizer

import (
	"errors"
	"strings"
	"testing"
)

// chatML is a hand-written ChatML template.
const chatML = `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`

func TestChatTemplateChatML(t *testing.T) {
	cfg := `{"chat_template":` + jsonString(chatML) + `,"bos_token":"<s>","eos_token":"</s>"}`
	tok := mustParse(t, wordLevelJSON, cfg)
	msgs := []Message{{"system", "Be nice."}, {"user", "Hi!"}}
	got, err := tok.ApplyChatTemplate(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nBe nice.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got, _ = tok.ApplyChatTemplate(msgs, false)
	if want := strings.TrimSuffix(want, "<|im_start|>assistant\n"); got != want {
		t.Errorf("without generation prompt: got %q", got)
	}
}

func TestChatTemplateNamedList(t *testing.T) {
	cfg := `{"bos_token":"<s>","chat_template":[{"name":"default","template":"{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"},
		{"name":"tool_use","template":"TOOLS"},{"name":"strict","template":"{{ raise_exception('no ' + messages[0].role) }}"}]}`
	tok := mustParse(t, wordLevelJSON, cfg)
	got, err := tok.ApplyChatTemplate([]Message{{"user", "q"}, {"assistant", "a"}}, false)
	if err != nil || got != "<s>[user]q[assistant]a" {
		t.Errorf("default: %q %v", got, err)
	}
	if src, ok := tok.ChatTemplate("tool_use"); !ok || src != "TOOLS" {
		t.Errorf("ChatTemplate(tool_use) = %q %v", src, ok)
	}
	if _, err := tok.applyChatTemplate("strict", []Message{{"user", "x"}}, false); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Errorf("raise_exception: %v", err)
	}
	if _, err := tok.applyChatTemplate("missing", nil, false); err == nil {
		t.Error("missing template name accepted")
	}
	plain := mustParse(t, wordLevelJSON, "")
	if _, err := plain.ApplyChatTemplate(nil, true); !errors.Is(err, ErrNoChatTemplate) {
		t.Errorf("no template: %v", err)
	}
	bad := mustParse(t, wordLevelJSON, `{"chat_template":"{% for %}"}`)
	if _, err := bad.ApplyChatTemplate(nil, true); err == nil {
		t.Error("template with a syntax error rendered")
	}
}

// The chat templates shipped with real models, against outputs derived by
// reading each template.
func TestChatTemplatesOfRealModels(t *testing.T) {
	dir := ensureOracle(t)
	paths := oraclePaths(t, dir)
	conversation := []Message{{"system", "Be brief."}, {"user", " Hi there "}, {"assistant", "Hello!"}, {"user", "Bye"}}
	for _, tc := range []struct {
		name string
		msgs []Message
		gen  bool
		want string
		err  string
	}{
		// Llama 3 (base) trims contents, puts BOS first and always ends
		// with the assistant header.
		{"llama3", conversation, false, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", ""},
		// Qwen 3: earlier assistant turns lose their reasoning; the prompt
		// opens an assistant turn.
		{"qwen3", []Message{{"system", "S"}, {"user", "U1"}, {"assistant", "<think>\nR\n</think>\n\nA1"}, {"user", "U2"}}, true,
			"<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n", ""},
		// Qwen 3: the final assistant turn gets an (empty) think block.
		{"qwen3", []Message{{"user", "Q"}, {"assistant", "Ans"}}, false,
			"<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nAns<|im_end|>\n", ""},
		// Gemma 3 folds the system prompt into the first user turn and
		// calls the assistant "model".
		{"gemma3", conversation, true, "<bos><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n" +
			"<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n", ""},
		{"gemma3", []Message{{"user", "a"}, {"user", "b"}}, true, "", "Conversation roles must alternate"},
		{"deepseek_v3", conversation, true, "<｜begin▁of▁sentence｜>Be brief.<｜User｜> Hi there <｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>Bye<｜Assistant｜>", ""},
	} {
		tok, err := loadShared(paths[tc.name])
		if err != nil {
			t.Fatal(err)
		}
		got, err := tok.ApplyChatTemplate(tc.msgs, tc.gen)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s:\n got  %q\n want %q", tc.name, got, tc.want)
		}
		// The rendered prompt encodes with its special tokens recognised.
		ids, err := tok.Encode(got, false)
		if err != nil || len(ids) == 0 {
			t.Errorf("%s: encode rendered prompt: %v", tc.name, err)
		}
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
