package tokenizer

import (
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dlclark/regexp2"
)

// The hand-written matchers must agree with a backtracking regex engine
// running the very pattern they replace, on the corpus and on random text
// built from the characters the patterns care about.
func TestFastMatchersAgreeWithRegex(t *testing.T) {
	corpus, _ := readCorpus(t, filepath.Join(oracleDir(t), "corpus.jsonl"))
	inputs := []string{"", "'", "''s", "'S", "'ll", "'LL", "'Re", "x'veY", " '", "a  b", "a \n b", " \r\n\r\n x", "\t\t\n", "  ", "1234567", " 12", "!!\r\n\n", " !?", "\u00A0x", "\u3000\u3000x"}
	for _, l := range corpus {
		inputs = append(inputs, l.Text)
	}
	pool := []string{"a", "B", "é", "e\u0301", "你", "ا", "1", "٣", "Ⅷ", "½", "²", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00A0", "\u3000", "\u2028",
		"'", "'s", "'T", "'re", "'VE", "'m", "'ll", "'D", "!", ".", "-", "_", "😀", "\u200D", "\uFE0F", "\u0000", "\u0085", "x",
		"/", "$", "+", "Ǆ", "ǅ", "ʰ", "ا", "カ", "一", "\u0301", "\u0903", "A\u0301", "ǅa", "ʰA", "AB", "Ab", "aB", "$x", "\u3000/"}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for k := rng.Intn(20); k >= 0; k-- {
			b.WriteString(pool[rng.Intn(len(pool))])
		}
		inputs = append(inputs, b.String())
	}
	for _, tc := range []struct {
		name    string
		pattern string
		fast    matcher
	}{
		{"gpt2", gpt2Pattern, gpt2Matcher{}},
		{"llama3", llama3Pattern, llamaMatcher{maxDigits: 3}},
		{"qwen2", qwen2Pattern, llamaMatcher{maxDigits: 1}},
		{"numbers3", numbers3Pattern, numberMatcher{max: 3}},
		{"deepseek-cjk", deepseekCJKPattern, runMatcher{isDeepseekCJK}},
		{"deepseek", deepseekPattern, searchMatcher{deepseekMatchAt}},
		{"o200k", o200kPattern, searchMatcher{o200kMatchAt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			re := regexMatcher{re: regexp2.MustCompile(onigToRegexp2(tc.pattern), regexp2.Multiline)}
			for _, in := range inputs {
				got := tc.fast.matches(in, nil)
				want := re.matches(in, nil)
				if !slices.Equal(got, want) {
					t.Fatalf("%q:\n fast  %v\n regex %v", in, got, want)
				}
			}
		})
	}
}

func TestCompileRegexPicksFastMatchers(t *testing.T) {
	for p, want := range map[string]matcher{gpt2Pattern: gpt2Matcher{}, llama3Pattern: llamaMatcher{3}, qwen2Pattern: llamaMatcher{1},
		numbers3Pattern: numberMatcher{3}, strings.ReplaceAll(deepseekPattern, `\r\n`, "\r\n"): nil, o200kPattern: nil} {
		if want == nil {
			if m, ok := knownMatcher(p); !ok {
				t.Errorf("no fast matcher for %q", p)
			} else if _, isSearch := m.(searchMatcher); !isSearch {
				t.Errorf("%q: got %T", p, m)
			}
			continue
		}
		m, err := compileRegex(p)
		if err != nil || m != want {
			t.Errorf("compileRegex(%q) = %#v, %v", p, m, err)
		}
	}
	if m, err := compileRegex(`\d+|[a-z]+`); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(regexMatcher); !ok {
		t.Errorf("got %T, want the regex fallback", m)
	}
}

// Oniguruma's (?i) folds U+017F LATIN SMALL LETTER LONG S to 's', so "'ſ" is
// a contraction for Llama 3's pattern (the JavaScript port misses this).
func TestLlamaContractionLongS(t *testing.T) {
	got := llamaMatcher{3}.matches("x'ſt", nil)
	want := []span{{0, 1}, {1, 4}, {4, 5}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestOnigToRegexp2(t *testing.T) {
	for in, want := range map[string]string{
		`\w+`:        `[` + onigWordClass + `]+`,
		`[\w-]`:      `[` + onigWordClass + `-]`,
		`\W`:         `[^` + onigWordClass + `]`,
		`\h+`:        `[0-9a-fA-F]+`,
		`[]a]`:       `[\]a]`,
		`[^]a]`:      `[^\]a]`,
		`\s+(?!\S)`:  `\s+(?!\S)`,
		`(?i:'s|'t)`: `(?i:'s|'t)`,
		`a\\w`:       `a\\w`,
	} {
		if got := onigToRegexp2(in); got != want {
			t.Errorf("onigToRegexp2(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitBehaviors(t *testing.T) {
	// Cutting "a--b-" at "-" with each behaviour, as the Rust library's
	// NormalizedString::split documents.
	lit := literalMatcher{"-"}
	for _, tc := range []struct {
		b      splitBehavior
		invert bool
		want   []string
	}{
		{splitRemoved, false, []string{"a", "b"}},
		{splitIsolated, false, []string{"a", "-", "-", "b", "-"}},
		{splitMergedWithPrevious, false, []string{"a-", "-", "b-"}},
		{splitMergedWithNext, false, []string{"a", "-", "-b", "-"}},
		{splitContiguous, false, []string{"a", "--", "b", "-"}},
		{splitRemoved, true, []string{"-", "-", "-"}},
	} {
		sp := splitter{m: lit, behavior: tc.b, invert: tc.invert}
		spans, _, _ := sp.split("a--b-", nil, nil, nil)
		var got []string
		for _, s := range spans {
			got = append(got, "a--b-"[s.start:s.end])
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("behavior %d invert %v: got %q, want %q", tc.b, tc.invert, got, tc.want)
		}
	}
}
