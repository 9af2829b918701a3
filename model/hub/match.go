package hub

import "strings"

// matchPattern matches name against a shell pattern with the semantics of
// Python's fnmatch.fnmatchcase, which huggingface_hub uses for allow
// patterns: '*' matches any run of characters including '/', '?' any one,
// '[seq]' / '[!seq]' a set. A pattern ending in '/' matches everything
// under that folder.
func matchPattern(pattern, name string) bool {
	if strings.HasSuffix(pattern, "/") {
		pattern += "*"
	}
	return match([]rune(pattern), []rune(name))
}

func match(p, s []rune) bool {
	// Iterative wildcard matching with one backtrack point for the last '*'.
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				if ok, next, valid := matchClass(p, pi, s[si]); valid {
					if ok {
						pi, si = next, si+1
						continue
					}
				} else if s[si] == '[' { // an unclosed '[' is a literal
					pi++
					si++
					continue
				}
			default:
				if p[pi] == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchClass matches c against the set starting at p[i] == '['. It returns
// whether c is in the set, the index after the set, and false for valid when
// the set is not closed.
func matchClass(p []rune, i int, c rune) (ok bool, next int, valid bool) {
	j := i + 1
	negate := false
	if j < len(p) && p[j] == '!' {
		negate = true
		j++
	}
	first := true
	for ; j < len(p); j++ {
		if p[j] == ']' && !first {
			return ok != negate, j + 1, true
		}
		first = false
		lo := p[j]
		if j+2 < len(p) && p[j+1] == '-' && p[j+2] != ']' {
			if lo <= c && c <= p[j+2] {
				ok = true
			}
			j += 2
			continue
		}
		if c == lo {
			ok = true
		}
	}
	return false, 0, false
}
