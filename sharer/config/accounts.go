package config

import (
	"fmt"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
)

// Account is one entry of allow_accounts.
type Account struct {
	Group bool   // a group (group:NAME, gid:N) rather than a user
	Name  string // as written
	ID    int    // -1 until resolved
}

// ParseAccount reads a user name, uid:N, group:NAME or gid:N.
func ParseAccount(s string) (Account, error) {
	switch {
	case s == "":
		return Account{}, fmt.Errorf("empty account")
	case strings.HasPrefix(s, "uid:"), strings.HasPrefix(s, "gid:"):
		n, err := strconv.Atoi(s[4:])
		if err != nil || n < 0 {
			return Account{}, fmt.Errorf("account %q: want %s followed by a number", s, s[:4])
		}
		return Account{Group: s[0] == 'g', Name: s, ID: n}, nil
	case strings.HasPrefix(s, "group:"):
		if len(s) == len("group:") {
			return Account{}, fmt.Errorf("account %q: want group:NAME", s)
		}
		return Account{Group: true, Name: s, ID: -1}, nil
	}
	return Account{Name: s, ID: -1}, nil
}

// Accounts is a resolved allow_accounts list.
type Accounts struct {
	uids map[int]bool
	gids map[int]bool
}

// ResolveAccounts looks names up in the user database. A name that does not
// exist is an error: a typo must not silently lock everyone out.
func ResolveAccounts(list []string) (Accounts, error) {
	a := Accounts{uids: map[int]bool{}, gids: map[int]bool{}}
	for _, s := range list {
		acc, err := ParseAccount(s)
		if err != nil {
			return a, err
		}
		if acc.ID < 0 {
			if acc.Group {
				name := strings.TrimPrefix(acc.Name, "group:")
				g, err := user.LookupGroup(name)
				if err != nil {
					return a, fmt.Errorf("no group %q on this machine", name)
				}
				acc.ID, _ = strconv.Atoi(g.Gid)
			} else {
				u, err := user.Lookup(acc.Name)
				if err != nil {
					return a, fmt.Errorf("no user %q on this machine (use uid:N for a numeric id)", acc.Name)
				}
				acc.ID, _ = strconv.Atoi(u.Uid)
			}
		}
		if acc.Group {
			a.gids[acc.ID] = true
		} else {
			a.uids[acc.ID] = true
		}
	}
	return a, nil
}

// Allows reports whether a process with these credentials may register. A
// group entry matches the primary gid or a supplementary group (read from
// /proc for the peer's pid, else from the user database).
func (a Accounts) Allows(uid, gid, pid int) bool {
	if a.uids[uid] || a.gids[gid] {
		return true
	}
	if len(a.gids) == 0 {
		return false
	}
	for _, g := range supplementaryGroups(uid, pid) {
		if a.gids[g] {
			return true
		}
	}
	return false
}

func supplementaryGroups(uid, pid int) []int {
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
				var gs []int
				for _, f := range strings.Fields(rest) {
					if n, err := strconv.Atoi(f); err == nil {
						gs = append(gs, n)
					}
				}
				return gs
			}
		}
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return nil
	}
	ids, _ := u.GroupIds()
	gs := make([]int, 0, len(ids))
	for _, s := range ids {
		if n, err := strconv.Atoi(s); err == nil {
			gs = append(gs, n)
		}
	}
	return gs
}

func sortStrings(s []string) { sort.Strings(s) }
