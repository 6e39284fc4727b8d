package config

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noPID is above the kernel's pid_max: /proc has nothing for it, so Allows
// falls back to the user database.
const noPID = 1 << 30

// noUID is a uid no user database on a test machine holds.
const noUID = 3999999

func TestParseAccount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Account
		err  string
	}{
		{in: "root", want: Account{Name: "root", ID: -1}},
		{in: "uid:0", want: Account{Name: "uid:0", ID: 0}},
		{in: "uid:1000", want: Account{Name: "uid:1000", ID: 1000}},
		{in: "gid:4", want: Account{Group: true, Name: "gid:4", ID: 4}},
		{in: "group:adm", want: Account{Group: true, Name: "group:adm", ID: -1}},
		{in: "", err: "empty account"},
		{in: "uid:", err: `account "uid:": want uid: followed by a number`},
		{in: "uid:x", err: `account "uid:x": want uid: followed by a number`},
		{in: "uid:-1", err: `account "uid:-1"`},
		{in: "gid:1.5", err: `account "gid:1.5": want gid: followed by a number`},
		{in: "group:", err: `account "group:": want group:NAME`},
	} {
		a, err := ParseAccount(tc.in)
		if tc.err != "" {
			require.Error(t, err, "%q", tc.in)
			assert.Contains(t, err.Error(), tc.err)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, a, "%q", tc.in)
	}
}

func TestResolveAccounts(t *testing.T) {
	a, err := ResolveAccounts([]string{"root"})
	require.NoError(t, err)
	assert.True(t, a.Allows(0, noUID, noPID), "root by name")
	assert.False(t, a.Allows(noUID, noUID, noPID))

	a, err = ResolveAccounts([]string{"uid:4242"})
	require.NoError(t, err)
	assert.True(t, a.Allows(4242, noUID, noPID))
	assert.False(t, a.Allows(4243, noUID, noPID))
	assert.False(t, a.Allows(noUID, 4242, noPID), "a uid entry does not match a gid")

	a, err = ResolveAccounts([]string{"gid:4343"})
	require.NoError(t, err)
	assert.True(t, a.Allows(noUID, 4343, noPID), "primary gid")
	assert.False(t, a.Allows(4343, noUID, noPID), "a gid entry does not match a uid")

	a, err = ResolveAccounts([]string{"group:root"})
	require.NoError(t, err)
	assert.True(t, a.Allows(noUID, 0, noPID), "group:root is gid 0")
	// No /proc entry: the user database says root's groups include root.
	assert.True(t, a.Allows(0, noUID, noPID), "groups of uid 0 from the user database")
	assert.False(t, a.Allows(noUID, noUID, noPID), "unknown uid, no process: no groups")

	var none Accounts
	assert.False(t, none.Allows(0, 0, os.Getpid()), "the zero Accounts allows nobody")
}

func TestResolveAccountsUnknownNames(t *testing.T) {
	_, err := ResolveAccounts([]string{"root", "no-such-user-portshare"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no user")
	assert.Contains(t, err.Error(), "no-such-user-portshare")

	_, err = ResolveAccounts([]string{"group:no-such-group-portshare"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no-such-group-portshare")

	_, err = ResolveAccounts([]string{"uid:x"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "uid:x")
}

// Supplementary groups come from /proc/PID/status of the peer: here the
// test's own process, whose groups getgroups(2) tells independently.
func TestAllowsSupplementaryGroupsOfOwnProcess(t *testing.T) {
	groups, err := os.Getgroups()
	require.NoError(t, err)
	pid := os.Getpid()
	for _, g := range groups {
		if g == os.Getgid() {
			continue
		}
		a, err := ResolveAccounts([]string{"gid:" + strconv.Itoa(g)})
		require.NoError(t, err)
		assert.True(t, a.Allows(noUID, noUID, pid), "supplementary group %d of pid %d", g, pid)
	}
	a, err := ResolveAccounts([]string{"gid:" + strconv.Itoa(noUID)})
	require.NoError(t, err)
	assert.False(t, a.Allows(noUID, noUID+1, pid), "a group the process is not in")
}

// A process given a supplementary group the user database does not know is
// allowed by that group: proof that /proc, not the database, was read.
func TestAllowsSupplementaryGroupFromProc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process with chosen groups")
	}
	const gid = 4242
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{gid}},
		Pdeathsig:  syscall.SIGKILL,
	}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	a, err := ResolveAccounts([]string{"gid:" + strconv.Itoa(gid)})
	require.NoError(t, err)
	assert.True(t, a.Allows(0, 0, cmd.Process.Pid), "group %d read from /proc/%d/status", gid, cmd.Process.Pid)
	assert.False(t, a.Allows(0, 0, noPID), "root's groups in the user database do not include %d", gid)
}
