package scoring

import (
	"math"
	"math/rand"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol || math.IsNaN(got) {
		t.Errorf("%s = %.12g, want %.12g (±%g)", what, got, want, tol)
	}
}

func TestNormalizeAnswer(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"The  Quick, brown fox!", "quick brown fox"},
		{"an apple a day", "apple day"},
		{"Theatre and Anthem", "theatre and anthem"}, // articles only as whole words
		{"the_the the-the", "thethe thethe"},         // '_' and '-' are punctuation, removed before the articles
		{"  A\tB\nC  ", "b c"},
		{"éa b", "éa b"},             // é is a word character: no boundary before a
		{"a’s", "’s"},                // ’ is not ASCII punctuation and not a word character
		{"ΟΔΟΣ ΣΟΦΟΣ", "οδος σοφος"}, // Python's final sigma
		{"İstanbul", "i\u0307stanbul"},
		{"", ""},
		{"The", ""},
		{"«the»", "« »"},
	} {
		if got := NormalizeAnswer(c.in); got != c.want {
			t.Errorf("NormalizeAnswer(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestExactMatchAndF1(t *testing.T) {
	if !ExactMatch("The Cat.", []string{"dog", "a cat"}) {
		t.Error("normalised exact match missed")
	}
	if ExactMatchRaw("The Cat.", []string{"a cat"}) || !ExactMatchRaw("x", []string{"y", "x"}) {
		t.Error("raw exact match wrong")
	}
	if ExactMatch("", nil) {
		t.Error("exact match against no reference")
	}
	// Worked by hand: prediction tokens [cat sat], reference [cat sat down]:
	// common 2, P = 1, R = 2/3, F = 2·(2/3)/(5/3) = 0.8.
	near(t, "f1", TokenF1("the cat sat", []string{"a cat sat down"}), 0.8, 1e-15)
	// Multiset intersection: [a-less] "x x y" vs "x z": common 1, P=1/3, R=1/2, F=0.4.
	near(t, "f1 multiset", TokenF1("x x y", []string{"x z"}), 0.4, 1e-15)
	// Max over references.
	near(t, "f1 max", TokenF1("x x y", []string{"q", "x z", "x x y"}), 1, 0)
	// SQuAD v1.1: both empty after normalisation scores 0, not 1.
	near(t, "f1 empty", TokenF1("the", []string{"a"}), 0, 0)
	near(t, "f1 no refs", TokenF1("x", nil), 0, 0)
	// The SQuAD v1.1 dev example (Super Bowl 50, first question): the answer
	// "Denver Broncos" against its three references is an exact match; "the
	// Broncos" gets F1 = 2·1·(1/2)/(3/2) = 2/3.
	refs := []string{"Denver Broncos", "Denver Broncos", "Denver Broncos"}
	if !ExactMatch("Denver Broncos", refs) {
		t.Error("Denver Broncos")
	}
	near(t, "f1 broncos", TokenF1("the Broncos", refs), 2.0/3, 1e-15)
}

func TestRougeL(t *testing.T) {
	// rouge-score's README example.
	s := RougeL("The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log.")
	near(t, "precision", s.Precision, 0.625, 1e-12)
	near(t, "recall", s.Recall, 5.0/9, 1e-12)
	near(t, "fmeasure", s.FMeasure, 0.5882352941176471, 1e-12)
	// rouge_scorer_test.py: testRougeLConsecutive, testRougeLNonConsecutive, testRougeEmpty.
	for _, pred := range []string{"testing one", "testing two"} {
		s = RougeL("testing one two", pred)
		near(t, pred+" P", s.Precision, 1, 1e-12)
		near(t, pred+" R", s.Recall, 2.0/3, 1e-12)
		near(t, pred+" F", s.FMeasure, 0.8, 1e-12)
	}
	if s := RougeL("testing one two", ""); s != (RougeScore{}) {
		t.Errorf("empty prediction: %+v", s)
	}
	if s := RougeL("w1 w2", "/"); s != (RougeScore{}) {
		t.Errorf("prediction without tokens: %+v", s)
	}
	// rouge_scorer_test.py testRougeLAgainstRouge155: the first two lines of
	// its testdata, with the values of the official ROUGE-1.5.5 (5 places).
	targets := []string{
		"ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L\n",
		"KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN\n",
	}
	preds := []string{
		"rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi\n",
		"n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD\n",
	}
	want := [][3]float64{{0.40741, 0.68750, 0.51163}, {0.40476, 0.65385, 0.50000}}
	for i := range targets {
		s := RougeL(targets[i], preds[i])
		near(t, "R155 recall", s.Recall, want[i][0], 5e-6)
		near(t, "R155 precision", s.Precision, want[i][1], 5e-6)
		near(t, "R155 fmeasure", s.FMeasure, want[i][2], 5e-6)
	}
	// Several targets: the one with the highest F.
	m := RougeLMulti([]string{"nothing here", "testing one two"}, "testing one")
	near(t, "multi F", m.FMeasure, 0.8, 1e-12)
	if got := RougeTokens("It's A-OK, 3.5%!"); strings.Join(got, "|") != "it|s|a|ok|3|5" {
		t.Errorf("RougeTokens = %q", got)
	}
}

// Published examples from sacreBLEU's README and test suite
// (test/test_bleu.py, test/test_sentence_bleu.py).
var (
	readmeHyps = []string{"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."}
	readmeRefs = [][]string{ // per hypothesis: its two references
		{"The dog bit the man.", "The dog had bit the man."},
		{"It was not unexpected.", "No one was surprised."},
		{"The man bit him first.", "The man had bitten the dog."},
	}
)

func TestCorpusBLEUReadme(t *testing.T) {
	// BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18).
	// By hand: matches 6+2+6=14/17, 5+0+2=7/14, 4+0+1=5/11, 3+0+0=3/8; closest
	// reference lengths 6, 5, 7.
	r := CorpusBLEU(readmeHyps, readmeRefs)
	near(t, "BLEU", r.Score, 48.530827, 1e-6)
	if r.SysLen != 17 || r.RefLen != 18 {
		t.Errorf("lengths %d/%d, want 17/18", r.SysLen, r.RefLen)
	}
	near(t, "BP", r.BP, math.Exp(1-18.0/17), 1e-15)
	for i, want := range []float64{1400.0 / 17, 50, 500.0 / 11, 37.5} {
		near(t, "precision", r.Precisions[i], want, 1e-12)
	}
	// Empty hypotheses are kept and score 0.
	near(t, "empty", CorpusBLEU([]string{"", "", ""}, readmeRefs).Score, 0, 0)
	// tokenize='none'.
	var s BLEUStats
	for i, h := range readmeHyps {
		s.Add(h, readmeRefs[i], func(x string) string { return x })
	}
	near(t, "tokenize none", s.Score(BLEUOptions{}).Score, 49.1919566, 1e-6)
	near(t, "smooth none", CorpusBLEUWith(readmeHyps, readmeRefs, 4, BLEUOptions{Smooth: SmoothNone}).Score, 48.530827, 1e-6)
	// test_max_ngram_order, to two decimals.
	for order, want := range map[int]float64{1: 77.65, 2: 60.50, 3: 53.93, 4: 48.53, 5: 46.14, 6: 43.28} {
		got := CorpusBLEUWith(readmeHyps, readmeRefs, order, BLEUOptions{}).Score
		near(t, "max order", math.Round(got*100)/100, want, 1e-9)
	}
}

// CorpusBLEUWith is CorpusBLEU with another n-gram order and options.
func CorpusBLEUWith(hyps []string, refs [][]string, order int, opt BLEUOptions) BLEUResult {
	s := BLEUStats{Order: order}
	for i, h := range hyps {
		s.Add(h, refs[i], nil)
	}
	return s.Score(opt)
}

func f(x float64) *float64 { return &x }

// rawBLEU is sacreBLEU's raw_corpus_bleu: tokenize none, floor smoothing,
// effective order, score/100.
func rawBLEU(hyps []string, refs [][]string, floor *float64) float64 {
	var s BLEUStats
	for i, h := range hyps {
		s.Add(h, refs[i], func(x string) string { return x })
	}
	return s.Score(BLEUOptions{Smooth: SmoothFloor, SmoothValue: floor, EffectiveOrder: true}).Score / 100
}

func TestSacreBLEUSuite(t *testing.T) {
	// test_raw_bleu.
	near(t, "raw 1", rawBLEU([]string{"this is a test", "another test"}, [][]string{{"ref1"}, {"ref2"}}, f(.01)), 0, 1e-8)
	near(t, "raw 2", rawBLEU([]string{"this is a test"}, [][]string{{"this is a test"}}, f(.01)), 1, 1e-8)
	near(t, "raw 3", rawBLEU([]string{"this is a fest"}, [][]string{{"this is a test"}}, f(.01)), 0.223606797749979, 1e-8)
	// test_effective_order.
	near(t, "eff 1", rawBLEU([]string{"test"}, [][]string{{"a test"}}, f(.01)), 0.3678794411714425, 1e-8)
	near(t, "eff 2", rawBLEU([]string{"a test"}, [][]string{{"a test"}}, f(.01)), 1, 1e-8)
	near(t, "eff 3", rawBLEU([]string{"a little test"}, [][]string{{"a test"}}, f(.01)), 0.03218297948685433, 1e-8)
	// test_statistics and test_offset.
	hyp, ref := []string{"am I am a character sequence"}, [][]string{{"I am a symbol string sequence a a"}}
	var s BLEUStats
	s.Add(hyp[0], ref[0], func(x string) string { return x })
	if !equalInts(s.Correct, []int64{4, 2, 1, 0}) || !equalInts(s.Total, []int64{6, 5, 4, 3}) {
		t.Errorf("statistics %v %v", s.Correct, s.Total)
	}
	near(t, "offset 0", rawBLEU(hyp, ref, f(0)), 0, 1e-8)
	near(t, "offset default", rawBLEU(hyp, ref, nil), 0.1555722182, 1e-8)
	// test_scoring: compute_bleu's default smoothing is none.
	sc := BLEUStats{SysLen: 11, RefLen: 11, Correct: []int64{9, 7, 5, 3}, Total: []int64{10, 8, 6, 4}}
	near(t, "scoring", sc.Score(BLEUOptions{Smooth: SmoothNone}).Score/100, 0.8375922397, 1e-8)
	// test_degenerate_statistics: exactly 0.
	for _, d := range []struct {
		c, tot   []int64
		sys, ref int64
		floor    float64
	}{
		{[]int64{0, 0, 0, 0}, []int64{4, 4, 2, 1}, 0, 1, 0},
		{[]int64{0, 0, 0, 0}, []int64{10, 11, 12, 0}, 14, 10, 0},
		{[]int64{0, 0, 0, 0}, []int64{0, 0, 0, 0}, 0, 0, 0},
		{[]int64{6, 5, 4, 0}, []int64{6, 5, 4, 3}, 6, 6, 0},
		{[]int64{0, 0, 0, 0}, []int64{0, 0, 0, 0}, 0, 0, 0.1},
		{[]int64{0, 0, 0, 0}, []int64{0, 0, 0, 0}, 1, 5, 0.01},
	} {
		st := BLEUStats{SysLen: d.sys, RefLen: d.ref, Correct: d.c, Total: d.tot}
		if got := st.Score(BLEUOptions{Smooth: SmoothFloor, SmoothValue: f(d.floor)}).Score; got != 0 {
			t.Errorf("degenerate %+v = %g, want 0", d, got)
		}
	}
}

func TestSacreBLEUSentence(t *testing.T) {
	// test_sentence_bleu.py (issue #98): sentence BLEU with effective order, ±1e-3.
	const ref = "producţia de zahăr brut se exprimă în zahăr alb;"
	const sys = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;"
	sent := func(opt BLEUOptions, tok func(string) string) float64 {
		var s BLEUStats
		s.Add(sys, []string{ref}, tok)
		opt.EffectiveOrder = true
		return s.Score(opt).Score
	}
	near(t, "exp", sent(BLEUOptions{Smooth: SmoothExp}, nil), 8.493, 1e-3)
	near(t, "none", sent(BLEUOptions{Smooth: SmoothNone}, nil), 0, 1e-3)
	near(t, "floor", sent(BLEUOptions{Smooth: SmoothFloor}, nil), 4.51688, 1e-3)
	near(t, "floor .5", sent(BLEUOptions{Smooth: SmoothFloor, SmoothValue: f(.5)}, nil), 10.10, 1e-3)
	near(t, "add-k", sent(BLEUOptions{Smooth: SmoothAddK}, nil), 14.882, 1e-3)
	near(t, "add-k 2", sent(BLEUOptions{Smooth: SmoothAddK, SmoothValue: f(2)}, nil), 21.389, 1e-3)
	near(t, "tok none", sent(BLEUOptions{Smooth: SmoothExp}, func(x string) string { return x }), 7.347, 1e-3)
	// #141: no match at all is 0 whatever the smoothing.
	for _, m := range []BLEUSmoothing{SmoothExp, SmoothNone, SmoothFloor, SmoothAddK} {
		var s BLEUStats
		s.Add("this is a cat", []string{"okay thanks"}, nil)
		if got := s.Score(BLEUOptions{Smooth: m, EffectiveOrder: true}).Score; got != 0 {
			t.Errorf("#141 %s = %g", m, got)
		}
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTokenize13a(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"The dog bit the man.", "The dog bit the man ."},
		{"It wasn't surprising.", "It wasn't surprising ."},
		{"Hello, world! 3.14 and 1,000 - 5-6 (x) a/b", "Hello , world ! 3.14 and 1,000 - 5 - 6 ( x ) a / b"},
		{"&quot;quoted&quot; &amp;lt; &lt;tag&gt;", "\" quoted \" < < tag >"}, // &amp;lt; → &lt; → <
		{"line-\nbreak\nnext <skipped>", "linebreak next"},
		{"end.", "end ."},
		{"x.y", "x . y"},
		{"2.x", "2 . x"},
		{"x.5", "x . 5"},
		{"..", ". ."},
		{"a...b", "a . . . b"},
		{"€.,ü", "€ . , ü"},
		{"", ""},
	} {
		if got := Tokenize13a(c.in); got != c.want {
			t.Errorf("Tokenize13a(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// tokenize13aRegexp restates sacreBLEU's tokenizer with Go's regexp package,
// whose leftmost non-overlapping replacement is Python's re.sub, to check the
// hand-written scanner on random strings.
var reSteps = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`([\{-\~\[-\x60 -\&\(-\+\:-\@\/])`), " ${1} "},
	{regexp.MustCompile(`([^0-9])([\.,])`), "${1} ${2} "},
	{regexp.MustCompile(`([\.,])([^0-9])`), " ${1} ${2}"},
	{regexp.MustCompile(`([0-9])(-)`), "${1} ${2} "},
}

func tokenize13aRegexp(line string) string {
	for _, r := range [][2]string{{"<skipped>", ""}, {"-\n", ""}, {"\n", " "}, {"&quot;", "\""}, {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}} {
		line = strings.ReplaceAll(line, r[0], r[1])
	}
	line = " " + line + " "
	for _, s := range reSteps {
		line = s.re.ReplaceAllString(line, s.repl)
	}
	return strings.Join(pyFields(line), " ")
}

func TestTokenize13aMatchesRegexps(t *testing.T) {
	alphabet := []rune("ab09.,-'\"&;<>/ \n\t()[]{}~`@:quotampltg€ü\u00a0\u001c")
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		n := rng.Intn(30)
		rs := make([]rune, n)
		for j := range rs {
			rs[j] = alphabet[rng.Intn(len(alphabet))]
		}
		s := string(rs)
		if got, want := Tokenize13a(s), tokenize13aRegexp(s); got != want {
			t.Fatalf("Tokenize13a(%q) = %q, regexps give %q", s, got, want)
		}
	}
}

func TestExactSumOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	xs := make([]float64, 5000)
	for i := range xs {
		xs[i] = rng.NormFloat64() * math.Pow(10, float64(rng.Intn(30)-15))
	}
	var a exactSum
	for _, x := range xs {
		a.Add(x)
	}
	want := a.Value()
	for trial := 0; trial < 5; trial++ {
		rng.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
		var parts [7]exactSum
		for i, x := range xs {
			parts[i%7].Add(x)
		}
		var m exactSum
		for i := range parts {
			m.Merge(&parts[i])
		}
		if got := m.Value(); got != want {
			t.Fatalf("order changed the sum: %v vs %v", got, want)
		}
	}
	// Known exact cases.
	var s exactSum
	for _, x := range []float64{1e100, 1, -1e100, 1e-100} {
		s.Add(x)
	}
	if s.Value() != 1 {
		t.Errorf("fsum = %v, want 1", s.Value())
	}
	var u exactSum
	for i := 0; i < 10; i++ {
		u.Add(0.1)
	}
	if u.Value() != 1 {
		t.Errorf("ten 0.1 = %v, want 1 (correctly rounded)", u.Value())
	}
	u.Add(math.Inf(1))
	if !math.IsInf(u.Value(), 1) {
		t.Error("inf lost")
	}
}

func FuzzTokenize13a(f *testing.F) {
	for _, s := range []string{"The dog bit the man.", "1,000.5-2", "&amp;quot;", "a.,b", "x-\ny", "€.,ü", "\u00a0.\x1c,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // JSON-decoded text is always valid UTF-8
		}
		if got, want := Tokenize13a(s), tokenize13aRegexp(s); got != want {
			t.Fatalf("Tokenize13a(%q) = %q, regexps give %q", s, got, want)
		}
	})
}
