package configs

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// The shipped recipes are the YAML files of this folder, embedded so that
// `herd train tiny` works from a bare binary.
//
//go:embed *.yaml
var recipeFS embed.FS

// Recipes lists the shipped recipe names (file names without .yaml), sorted.
func Recipes() []string {
	// The embedded root always exists once the package compiles, so there is no error to return.
	entries, _ := fs.ReadDir(recipeFS, ".")
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// Recipe returns the YAML of a shipped recipe, by name with or without ".yaml"
// (e.g. "tiny"). Parse it with the recipe's file name so run_name comes out right:
// Parse(data, name+".yaml", sets). An unknown name returns an error wrapping
// ErrUnknownRecipe that lists the known ones.
func Recipe(name string) ([]byte, error) {
	base := strings.TrimSuffix(name, ".yaml")
	if base == "" || strings.ContainsAny(base, `/\`) {
		return nil, fmt.Errorf("%w %q (have %s)", ErrUnknownRecipe, name, strings.Join(Recipes(), ", "))
	}
	data, err := recipeFS.ReadFile(base + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("%w %q (have %s)", ErrUnknownRecipe, name, strings.Join(Recipes(), ", "))
	}
	return data, nil
}
