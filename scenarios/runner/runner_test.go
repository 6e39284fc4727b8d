package runner

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// The runner's runs are tested end to end, with real processes, in
// cmd/portshare (tune_test.go); these are its pieces.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A temporary directory too deep for a Unix socket path moves to /tmp.
func TestTempDirKeepsTheSocketPathShort(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 90))
	require.NoError(t, os.MkdirAll(deep, 0o755))
	t.Setenv("TMPDIR", deep)
	dir, err := tempDir()
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	assert.Less(t, len(filepath.Join(dir, "portshare.sock")), 108)
	left, _ := os.ReadDir(deep)
	assert.Empty(t, left, "the first attempt was removed")

	t.Setenv("TMPDIR", t.TempDir())
	dir2, err := tempDir()
	require.NoError(t, err)
	defer os.RemoveAll(dir2)
	assert.True(t, strings.HasPrefix(dir2, os.Getenv("TMPDIR")), "a short TMPDIR is used")
}

func TestExitText(t *testing.T) {
	assert.Equal(t, "exit 0", exitText(nil))
	err := exec.Command("sh", "-c", "exit 3").Run()
	assert.Equal(t, "exit 3", exitText(err))
	err = exec.Command("sh", "-c", "kill -KILL $$").Run()
	assert.Equal(t, "killed by SIGKILL", exitText(err))
}

func TestMachineAndSysctls(t *testing.T) {
	m := machine()
	assert.Positive(t, m.CPUs)
	assert.NotEmpty(t, m.Kernel)
	s := sysctls()
	for _, k := range Sysctls {
		assert.NotEmpty(t, s[k], k)
	}
}
