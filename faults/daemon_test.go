package faults

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestInjectorRefusesFaultsThatWouldUndoEachOther(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		ok   bool
	}{
		{"nofile:for=2s", "nofile:at=1s,for=2s", false},
		{"nofile:for=1s", "nofile:at=1s,for=2s", false}, // touching: undo and apply due at once
		{"nofile:for=1s", "nofile:at=1001ms,for=2s", true},
		{"pause", "pause:at=500ms", false}, // a pause without for= lasts 1s
		{"pause", "pause:at=1s", false},
		{"pause", "pause:at=2s", true},
		{"pause:at=1s,for=1s", "restart:at=1500ms", false},
		{"nofile", "restart:at=10s", false}, // nofile to the end
		{"pause:for=1s", "nofile:for=1s", true},
		{"restart:at=3s", "pause:at=1s,for=1s", true},
	} {
		_, err := NewInjector(pidOnly(1), nil, []Spec{MustParse(Daemon, tc.a), MustParse(Daemon, tc.b)}, nil)
		if tc.ok {
			assert.NoError(t, err, "%s + %s", tc.a, tc.b)
		} else {
			assert.ErrorContains(t, err, "overlap in time", "%s + %s", tc.a, tc.b)
		}
	}
	_, err := NewInjector(pidOnly(1), &Netns{}, []Spec{MustParse(Network, "netem:delay=1ms"), MustParse(Daemon, "restart")}, nil)
	assert.NoError(t, err, "a restart leaves the link alone")
	_, err = NewInjector(nil, nil, []Spec{MustParse(Network, "netem:delay=1ms")}, nil)
	assert.ErrorContains(t, err, "network namespaces")
	_, err = NewInjector(nil, nil, []Spec{MustParse(Daemon, "pause")}, nil)
	assert.ErrorContains(t, err, "needs the daemon's process")
}

// pidOnly is a process NewInjector can check specs against; nothing here
// runs them.
type pidOnly int

func (p pidOnly) Pid() int { return int(p) }

func (pidOnly) Restart(time.Duration) error { return nil }
