package configs

import (
	"reflect"
	"sort"
	"strings"
	"sync"
)

// familiarNames maps keys that people bring from Hugging Face TrainingArguments, PEFT and
// axolotl configs to herd's field paths, so that a pasted config gets useful hints.
var familiarNames = map[string]string{
	"base_model":                  "model.path",
	"model_name_or_path":          "model.path",
	"torch_dtype":                 "model.dtype",
	"load_in_4bit":                "model.quantization",
	"bnb_4bit_use_double_quant":   "model.double_quant",
	"lora_r":                      "lora.r",
	"lora_alpha":                  "lora.alpha",
	"lora_dropout":                "lora.dropout",
	"lora_target_modules":         "lora.target_modules",
	"use_rslora":                  "lora.rslora",
	"sequence_len":                "dataset.max_seq_len",
	"max_seq_length":              "dataset.max_seq_len",
	"max_length":                  "dataset.max_seq_len",
	"sample_packing":              "dataset.packing",
	"learning_rate":               "training.lr",
	"num_train_epochs":            "training.epochs",
	"num_epochs":                  "training.epochs",
	"gradient_accumulation_steps": "training.grad_accum",
	"per_device_train_batch_size": "training.micro_batch_size",
	"lr_scheduler":                "training.scheduler",
	"lr_scheduler_type":           "training.scheduler",
	"save_steps":                  "training.checkpoint_every",
	"eval_steps":                  "training.eval_every",
	"logging_steps":               "training.log_every",
}

// schemaPaths lists every field path of Config, sections included, in declaration order.
var schemaPaths = sync.OnceValue(func() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			name := yamlName(t.Field(i))
			if name == "" {
				continue
			}
			p := joinPath(prefix, name)
			out = append(out, p)
			if ft := t.Field(i).Type; ft.Kind() == reflect.Struct && ft != durationType {
				walk(ft, p)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return out
})

// suggestion returns ` (did you mean "x"?)` for an unknown key in the struct t at path,
// or "" when nothing is close enough to be a useful guess.
func suggestion(t reflect.Type, path, key string) string {
	if s := guess(t, path, key); s != "" {
		return ` (did you mean "` + s + `"?)`
	}
	return ""
}

func guess(t reflect.Type, path, key string) string {
	var siblings []string
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			siblings = append(siblings, name)
		}
	}
	// Case and separators: microBatchSize, micro-batch-size.
	for _, s := range siblings {
		if normalize(s) == normalize(key) {
			return s
		}
	}
	if p, ok := familiarNames[strings.ToLower(key)]; ok {
		return relative(path, p)
	}
	// Typos.
	best, bestDist := "", maxTypoDistance(key)+1
	for _, s := range siblings {
		if dist := editDistance(key, s); dist < bestDist {
			best, bestDist = s, dist
		}
	}
	if best != "" {
		return best
	}
	// The right key in the wrong section: lr at the top level.
	var found []string
	for _, p := range schemaPaths() {
		if p == joinPath(path, key) {
			continue
		}
		if last := p[strings.LastIndexByte(p, '.')+1:]; last == key {
			found = append(found, p)
		}
	}
	if len(found) > 0 {
		sort.SliceStable(found, func(i, j int) bool { return len(found[i]) < len(found[j]) })
		return found[0]
	}
	return ""
}

// relative shows p relative to the section at path when it lies directly in it.
func relative(path, p string) string {
	if rest, ok := strings.CutPrefix(p, path+"."); ok && path != "" && !strings.Contains(rest, ".") {
		return rest
	}
	return p
}

func normalize(s string) string {
	return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
}

// maxTypoDistance grows with the key so that short keys do not match everything.
func maxTypoDistance(key string) int {
	switch n := len(key); {
	case n <= 1:
		return 0
	case n <= 5:
		return 1
	case n <= 10:
		return 2
	}
	return 3
}

// editDistance is the optimal-string-alignment distance between a and b in bytes:
// Levenshtein plus adjacent transpositions, the commonest typo ("modle").
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
