// Package config reads the daemon's YAML configuration (SPEC §3).
//
// Parsing is strict: an unknown key, a value of the wrong type, a bad
// duration or bad YAML is an error that names the file, the line and the
// key. Zero or missing keys take the documented defaults.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Policy is what the daemon does when a hand-off fails.
type Policy string

const (
	// Reclaim is the safe policy: credits, queue expiry, shutdown of a
	// timed-out hand-off, and a grace period for departed routes.
	Reclaim Policy = "reclaim"
	// Compat reproduces SMSvcHost 3.0, failures included.
	Compat Policy = "compat"
)

// Config is the daemon's configuration.
type Config struct {
	// File is where the configuration came from ("" for defaults).
	File string `json:"file,omitempty"`

	ControlSocket         string        `json:"control_socket"`
	ListenAddresses       []string      `json:"listen_addresses"`
	ListenBacklog         int           `json:"listen_backlog"`
	MaxPendingAccepts     int           `json:"max_pending_accepts"`
	MaxPendingConnections int           `json:"max_pending_connections"`
	ReceiveTimeout        time.Duration `json:"receive_timeout"`
	DispatchTimeout       time.Duration `json:"dispatch_timeout"`
	DispatchFailurePolicy Policy        `json:"dispatch_failure_policy"`
	QueueTimeout          time.Duration `json:"queue_timeout"`
	AllowAccounts         []string      `json:"allow_accounts"`
	MetricsAddr           string        `json:"metrics_addr"`

	// GracePeriod (reclaim only): how long a route whose last worker left
	// keeps answering EndpointUnavailable/503 before its port may close.
	GracePeriod time.Duration `json:"grace_period"`
	// ReregisterBackoff (compat only): how long a worker dropped after a
	// dispatch timeout must wait before it may register again (SMSvcHost's
	// reconnect back-off).
	ReregisterBackoff time.Duration `json:"reregister_backoff"`
	// MaxHTTPHead bounds an HTTP request head; larger gets 431.
	MaxHTTPHead int `json:"max_http_head"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`
}

// jsonConfig is the JSON form of Config: durations as Go duration text
// ("30s"), as in the YAML, rather than nanoseconds. Its own fields shadow
// the embedded ones of the same JSON name.
type jsonConfig struct {
	plainConfig
	ReceiveTimeout    string `json:"receive_timeout"`
	DispatchTimeout   string `json:"dispatch_timeout"`
	QueueTimeout      string `json:"queue_timeout"`
	GracePeriod       string `json:"grace_period"`
	ReregisterBackoff string `json:"reregister_backoff"`
}

type plainConfig Config

func (j *jsonConfig) durations(c *Config) []struct {
	s *string
	d *time.Duration
} {
	return []struct {
		s *string
		d *time.Duration
	}{{&j.ReceiveTimeout, &c.ReceiveTimeout}, {&j.DispatchTimeout, &c.DispatchTimeout}, {&j.QueueTimeout, &c.QueueTimeout},
		{&j.GracePeriod, &c.GracePeriod}, {&j.ReregisterBackoff, &c.ReregisterBackoff}}
}

// MarshalJSON writes durations as text ("30s").
func (c Config) MarshalJSON() ([]byte, error) {
	j := jsonConfig{plainConfig: plainConfig(c)}
	for _, f := range j.durations(&c) {
		*f.s = f.d.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Config) UnmarshalJSON(b []byte) error {
	var j jsonConfig
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*c = Config(j.plainConfig)
	for _, f := range j.durations(c) {
		if *f.s == "" {
			continue
		}
		d, err := time.ParseDuration(*f.s)
		if err != nil {
			return err
		}
		*f.d = d
	}
	return nil
}

// Default returns the configuration used for missing keys.
func Default() Config { return defaultFor(runtime.NumCPU()) }

// defaultFor is Default on a machine with cpus CPUs. max_pending_accepts is
// capped at the max_pending_connections default: 4 × CPUs alone would make
// the defaults invalid on machines with 26 CPUs or more.
func defaultFor(cpus int) Config {
	return Config{
		ControlSocket:         DefaultControlSocket(),
		ListenAddresses:       []string{"0.0.0.0", "::"},
		ListenBacklog:         12 * cpus,
		MaxPendingAccepts:     min(4*cpus, 100),
		MaxPendingConnections: 100,
		ReceiveTimeout:        30 * time.Second,
		DispatchTimeout:       60 * time.Second,
		DispatchFailurePolicy: Reclaim,
		QueueTimeout:          30 * time.Second,
		AllowAccounts:         defaultAccounts(),
		GracePeriod:           30 * time.Second,
		ReregisterBackoff:     30 * time.Second,
		MaxHTTPHead:           8 << 10,
		LogLevel:              "info",
	}
}

// DefaultControlSocket is /run/portshare/portshare.sock for root and
// $XDG_RUNTIME_DIR/portshare.sock otherwise (the temp dir if that is unset).
func DefaultControlSocket() string {
	if os.Geteuid() == 0 {
		return "/run/portshare/portshare.sock"
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("portshare-%d", os.Geteuid()))
	}
	return filepath.Join(dir, "portshare.sock")
}

func defaultAccounts() []string {
	acc := []string{"root"}
	if u, err := user.Current(); err == nil && u.Uid != "0" {
		acc = append(acc, "uid:"+u.Uid)
	}
	return acc
}

// Load reads and validates the configuration file at path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// field describes one key: how to set it from a YAML node, and whether
// its value is an integer.
type field struct {
	set   func(c *Config, n *yaml.Node) error
	isInt bool
}

// maxDuration bounds every duration key: far enough for any wait, near
// enough that deadlines never overflow.
const maxDuration = 365 * 24 * time.Hour

func durationField(dst func(*Config) *time.Duration, min time.Duration) field {
	return field{set: func(c *Config, n *yaml.Node) error {
		if n.Kind != yaml.ScalarNode {
			return errors.New("want a duration such as 30s or 250ms")
		}
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s or 250ms, got %q", n.Value)
		}
		if d < min {
			return fmt.Errorf("must be at least %s, got %s", min, d)
		}
		if d > maxDuration {
			return fmt.Errorf("must be at most %s, got %s", maxDuration, d)
		}
		*dst(c) = d
		return nil
	}}
}

func intField(dst func(*Config) *int, min, max int) field {
	return field{isInt: true, set: func(c *Config, n *yaml.Node) error {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return fmt.Errorf("want an integer, got %s", Describe(n))
		}
		v, err := strconv.Atoi(n.Value)
		if err != nil || v < min || v > max {
			return fmt.Errorf("want an integer from %d to %d, got %q", min, max, n.Value)
		}
		*dst(c) = v
		return nil
	}}
}

func stringField(dst func(*Config) *string, check func(string) error) field {
	return field{set: func(c *Config, n *yaml.Node) error {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			return fmt.Errorf("want a string, got %s", Describe(n))
		}
		if check != nil {
			if err := check(n.Value); err != nil {
				return err
			}
		}
		*dst(c) = n.Value
		return nil
	}}
}

// Describe names a YAML value for an error message: a scalar by its
// text, a list or mapping by its kind and an empty value as nothing (their
// text is empty, and `got ""` misleads). Other readers of YAML files
// (scenarios) name values the same way.
func Describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Tag == "!!null":
		return "nothing"
	}
	return strconv.Quote(n.Value)
}

func listField(dst func(*Config) *[]string, check func(string) error) field {
	return field{set: func(c *Config, n *yaml.Node) error {
		if n.Kind != yaml.SequenceNode {
			return errors.New("want a list of strings")
		}
		out := make([]string, 0, len(n.Content))
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a string", e.Line)
			}
			if check != nil {
				if err := check(e.Value); err != nil {
					return fmt.Errorf("line %d: %w", e.Line, err)
				}
			}
			out = append(out, e.Value)
		}
		*dst(c) = out
		return nil
	}}
}

var fields = map[string]field{
	"control_socket": stringField(func(c *Config) *string { return &c.ControlSocket }, func(s string) error {
		if s == "" {
			return errors.New("must not be empty")
		}
		return nil
	}),
	"listen_addresses":        listField(func(c *Config) *[]string { return &c.ListenAddresses }, checkIP),
	"listen_backlog":          intField(func(c *Config) *int { return &c.ListenBacklog }, 1, 1<<20),
	"max_pending_accepts":     intField(func(c *Config) *int { return &c.MaxPendingAccepts }, 1, 1<<12),
	"max_pending_connections": intField(func(c *Config) *int { return &c.MaxPendingConnections }, 1, 1<<20),
	"receive_timeout":         durationField(func(c *Config) *time.Duration { return &c.ReceiveTimeout }, time.Millisecond),
	"dispatch_timeout":        durationField(func(c *Config) *time.Duration { return &c.DispatchTimeout }, time.Millisecond),
	"queue_timeout":           durationField(func(c *Config) *time.Duration { return &c.QueueTimeout }, time.Millisecond),
	"grace_period":            durationField(func(c *Config) *time.Duration { return &c.GracePeriod }, 0),
	"reregister_backoff":      durationField(func(c *Config) *time.Duration { return &c.ReregisterBackoff }, 0),
	"dispatch_failure_policy": stringField(func(c *Config) *string { return (*string)(&c.DispatchFailurePolicy) }, func(s string) error {
		if Policy(s) != Reclaim && Policy(s) != Compat {
			return fmt.Errorf("want reclaim or compat, got %q", s)
		}
		return nil
	}),
	"allow_accounts": listField(func(c *Config) *[]string { return &c.AllowAccounts }, checkAccount),
	"metrics_addr":   stringField(func(c *Config) *string { return &c.MetricsAddr }, checkHostPort),
	// A hand-off carries the head in one control message (64 KiB).
	"max_http_head": intField(func(c *Config) *int { return &c.MaxHTTPHead }, 512, 48<<10),
	"log_level": stringField(func(c *Config) *string { return &c.LogLevel }, func(s string) error {
		switch s {
		case "debug", "info", "warn", "error":
			return nil
		}
		return fmt.Errorf("want debug, info, warn or error, got %q", s)
	}),
}

// Keys lists the configuration keys, sorted.
func Keys() []string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

// IsInt reports whether key's value is an integer: YAML that quotes it
// is refused. It is false for an unknown key.
func IsInt(key string) bool { return fields[key].isInt }

// Parse reads a configuration document; name is used in error messages.
// An empty file or empty document gives the defaults. A second document,
// even an empty one, is an error.
func Parse(name string, data []byte) (Config, error) {
	c := Default()
	c.File = name
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%s: bad YAML: %w", name, err)
	}
	// Check what follows the first document before using it: bad YAML
	// after a "---" must not pass unnoticed.
	switch err := dec.Decode(&extra); {
	case err == nil:
		return Config{}, fmt.Errorf("%s:%d: more than one YAML document", name, extra.Line)
	case !errors.Is(err, io.EOF):
		return Config{}, fmt.Errorf("%s: bad YAML: %w", name, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return c, nil // empty file or empty document: all defaults
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return Config{}, fmt.Errorf("%s:%d: want a mapping of keys (control_socket, listen_backlog, …)", name, root.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		f, ok := fields[k.Value]
		if !ok {
			return Config{}, fmt.Errorf("%s:%d: unknown key %q (known keys: %s)", name, k.Line, k.Value, strings.Join(Keys(), ", "))
		}
		if prev, dup := seen[k.Value]; dup {
			return Config{}, fmt.Errorf("%s:%d: key %q given twice (first on line %d)", name, k.Line, k.Value, prev)
		}
		seen[k.Value] = k.Line
		if err := f.set(&c, v); err != nil {
			return Config{}, fmt.Errorf("%s:%d: %s: %w", name, v.Line, k.Value, err)
		}
	}
	if err := c.validate(seen); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks relations between keys.
func (c Config) Validate() error { return c.validate(nil) }

// validate checks relations between keys; lines (key → line, from Parse)
// lets an error point at the line of the key that was given.
func (c Config) validate(lines map[string]int) error {
	where := c.File
	if where == "" {
		where = "config"
	}
	at := func(keys ...string) string {
		for _, k := range keys {
			if l, ok := lines[k]; ok {
				return fmt.Sprintf("%s:%d", where, l)
			}
		}
		return where
	}
	if len(c.ListenAddresses) == 0 {
		return fmt.Errorf("%s: listen_addresses must name at least one address", at("listen_addresses"))
	}
	seen := map[netip.Addr]string{}
	for _, s := range c.ListenAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%s: listen_addresses: %w", at("listen_addresses"), checkIP(s))
		}
		if prev, dup := seen[a.Unmap()]; dup {
			return fmt.Errorf("%s: listen_addresses names %s twice (as %q and %q)", at("listen_addresses"), a.Unmap(), prev, s)
		}
		seen[a.Unmap()] = s
	}
	if c.MaxPendingAccepts > c.MaxPendingConnections {
		given := func(key string, v int) string {
			if _, ok := lines[key]; ok || lines == nil {
				return fmt.Sprintf("%s (%d)", key, v)
			}
			return fmt.Sprintf("%s (%d, its default)", key, v)
		}
		return fmt.Errorf("%s: %s must not exceed %s: set both", at("max_pending_accepts", "max_pending_connections"),
			given("max_pending_accepts", c.MaxPendingAccepts), given("max_pending_connections", c.MaxPendingConnections))
	}
	return nil
}

func checkIP(s string) error {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not an IP address (use 0.0.0.0 or :: for all)", s)
	case a.Zone() != "":
		return fmt.Errorf("%q: IPv6 zones are not supported; use a global or loopback address", s)
	}
	return nil
}

// checkAccount also looks names up, so a typo is a configuration error
// with its line rather than a surprise at start.
func checkAccount(s string) error {
	if _, err := ParseAccount(s); err != nil {
		return err
	}
	_, err := ResolveAccounts([]string{s})
	return err
}

func checkHostPort(s string) error {
	if s == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port such as 127.0.0.1:9100, got %q", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q of %q is not a number from 0 to 65535", port, s)
	}
	return nil
}

// CheckValue checks one key's value as it would be read from a file, for
// tools that assemble configurations (the scenario runner): an unknown key
// or a bad value is an error without file or line, for the caller to
// place.
func CheckValue(key string, n *yaml.Node) error {
	f, ok := fields[key]
	if !ok {
		return fmt.Errorf("unknown key %q (known keys: %s)", key, strings.Join(Keys(), ", "))
	}
	var c Config
	return f.set(&c, n)
}
