package main

import (
	"io"
	"slices"
	"testing"
)

func TestInterleaveFlags(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	cases := []struct{ in, want []string }{
		{[]string{"herd", "config", "show", "a.yaml", "--set", "x=1"}, []string{"herd", "config", "show", "--set", "x=1", "a.yaml"}},
		{[]string{"herd", "config", "show", "--set=x=1", "a.yaml"}, []string{"herd", "config", "show", "--set=x=1", "a.yaml"}},
		{[]string{"herd", "doctor", "--json"}, []string{"herd", "doctor", "--json"}},
		{[]string{"herd", "version", "extra", "--json"}, []string{"herd", "version", "--json", "extra"}},
		{[]string{"herd", "config", "validate", "a.yaml", "--", "--set"}, []string{"herd", "config", "validate", "a.yaml", "--", "--set"}},
		{[]string{"herd"}, []string{"herd"}},
	}
	for _, c := range cases {
		if got := interleaveFlags(app, c.in); !slices.Equal(got, c.want) {
			t.Errorf("interleaveFlags(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
