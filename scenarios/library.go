package scenarios

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
)

//go:embed *.yaml
var library embed.FS

// Default is the scenario `portshare tune` runs without an argument.
const Default = "smsvchost-defaults"

// Names lists the scenarios built into the binary (the files of this
// directory), sorted.
func Names() []string {
	entries, _ := fs.ReadDir(library, ".")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Open reads a scenario by file path, or by the name of a built-in one
// (smsvchost-defaults, or smsvchost-defaults.yaml). A file in the working
// directory wins over a built-in of the same name; an argument with a /
// is always a path.
func Open(nameOrPath string) (*Scenario, error) {
	data, err := os.ReadFile(nameOrPath)
	switch {
	case err == nil:
		return Parse(nameOrPath, data)
	case !errors.Is(err, fs.ErrNotExist) || strings.Contains(nameOrPath, "/"):
		// A path names a file: a missing one is an error, not a built-in
		// scenario of the same base name.
		return nil, fmt.Errorf("scenario %s: %w", nameOrPath, err)
	}
	file := strings.TrimSuffix(nameOrPath, ".yaml") + ".yaml"
	data, err = library.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("no scenario file %q and no built-in scenario of that name (built in: %s)", nameOrPath, strings.Join(Names(), ", "))
	}
	return Parse("scenarios/"+file, data)
}
