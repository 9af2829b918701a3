package tokenizer

import (
	"encoding/json"
	"fmt"
)

// postProcessor adds special tokens around an encoded sequence. It is only
// called when the caller asks for special tokens.
type postProcessor interface {
	process(ids []int) []int
	// bosEOS returns the special tokens put before and after the sequence,
	// used when tokenizer_config.json does not name BOS/EOS.
	bosEOS() (bos, eos string)
}

// templateItem is one element of a TemplateProcessing "single" template:
// special ids, or the sequence itself (seq).
type templateItem struct {
	ids  []int
	name string
	seq  bool
}

type templateProcessor struct{ single []templateItem }

func (t *templateProcessor) process(ids []int) []int {
	out := make([]int, 0, len(ids)+4)
	for _, it := range t.single {
		if it.seq {
			out = append(out, ids...)
		} else {
			out = append(out, it.ids...)
		}
	}
	return out
}

func (t *templateProcessor) bosEOS() (bos, eos string) {
	seen := false
	for _, it := range t.single {
		switch {
		case it.seq:
			seen = true
		case !seen && bos == "":
			bos = it.name
		case seen:
			eos = it.name
		}
	}
	return bos, eos
}

// clsSepProcessor is BertProcessing and RobertaProcessing for one sequence.
type clsSepProcessor struct {
	cls, sep       int
	clsTok, sepTok string
}

func (p *clsSepProcessor) process(ids []int) []int {
	out := make([]int, 0, len(ids)+2)
	out = append(out, p.cls)
	out = append(out, ids...)
	return append(out, p.sep)
}

func (p *clsSepProcessor) bosEOS() (string, string) { return p.clsTok, p.sepTok }

// nopProcessor is the ByteLevel post-processor: it only trims offsets, which
// herd does not track.
type nopProcessor struct{}

func (nopProcessor) process(ids []int) []int  { return ids }
func (nopProcessor) bosEOS() (string, string) { return "", "" }

type sequenceProcessor []postProcessor

func (q sequenceProcessor) process(ids []int) []int {
	for _, p := range q {
		ids = p.process(ids)
	}
	return ids
}

func (q sequenceProcessor) bosEOS() (bos, eos string) {
	for _, p := range q {
		b, e := p.bosEOS()
		if b != "" {
			bos = b
		}
		if e != "" {
			eos = e
		}
	}
	return bos, eos
}

func buildPostProcessor(raw json.RawMessage, path string) (postProcessor, error) {
	if isNull(raw) {
		return nil, nil
	}
	var c struct {
		Type          string          `json:"type"`
		Single        json.RawMessage `json:"single"`
		SpecialTokens map[string]struct {
			ID     string   `json:"id"`
			IDs    []int    `json:"ids"`
			Tokens []string `json:"tokens"`
		} `json:"special_tokens"`
		Cls        []json.RawMessage `json:"cls"`
		Sep        []json.RawMessage `json:"sep"`
		Processors []json.RawMessage `json:"processors"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fieldErr(path, err)
	}
	switch c.Type {
	case "TemplateProcessing":
		var items []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		}
		if err := json.Unmarshal(c.Single, &items); err != nil {
			return nil, fieldErr(path+".single", err)
		}
		t := &templateProcessor{}
		for i, it := range items {
			switch {
			case it.SpecialToken != nil:
				st, ok := c.SpecialTokens[it.SpecialToken.ID]
				if !ok {
					return nil, fieldErr(fmt.Sprintf("%s.single[%d]", path, i), fmt.Errorf("special token %q missing from special_tokens", it.SpecialToken.ID))
				}
				t.single = append(t.single, templateItem{ids: st.IDs, name: it.SpecialToken.ID})
			case it.Sequence != nil:
				// A single-sequence template only holds $A; $B belongs to
				// pair templates.
				t.single = append(t.single, templateItem{seq: true})
			default:
				return nil, fieldErr(fmt.Sprintf("%s.single[%d]", path, i), fmt.Errorf("neither SpecialToken nor Sequence"))
			}
		}
		return t, nil
	case "BertProcessing", "RobertaProcessing":
		p := &clsSepProcessor{}
		var err error
		if p.clsTok, p.cls, err = parseTokenPair(c.Cls); err != nil {
			return nil, fieldErr(path+".cls", err)
		}
		if p.sepTok, p.sep, err = parseTokenPair(c.Sep); err != nil {
			return nil, fieldErr(path+".sep", err)
		}
		return p, nil
	case "ByteLevel":
		return nopProcessor{}, nil
	case "Sequence":
		var q sequenceProcessor
		for i, r := range c.Processors {
			p, err := buildPostProcessor(r, fmt.Sprintf("%s.processors[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if p != nil {
				q = append(q, p)
			}
		}
		return q, nil
	}
	return nil, fieldErr(path+".type", fmt.Errorf("%w: post-processor %q", ErrUnsupported, c.Type))
}

// parseTokenPair reads ["[CLS]", 101].
func parseTokenPair(raw []json.RawMessage) (string, int, error) {
	if len(raw) != 2 {
		return "", 0, fmt.Errorf("want [token, id], got %d elements", len(raw))
	}
	var tok string
	var id int
	if err := json.Unmarshal(raw[0], &tok); err != nil {
		return "", 0, err
	}
	if err := json.Unmarshal(raw[1], &id); err != nil {
		return "", 0, err
	}
	return tok, id, nil
}
