package faults

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// toolTimeout bounds each ip or tc run, so that a wedged one fails a test
// instead of hanging it.
const toolTimeout = 10 * time.Second

// tool returns the path of ip or tc: from PATH, else from the sbin
// directories, which a root shell reached through sudo or su often leaves
// out of PATH. A tool not found is returned as its bare name, so that
// running it fails with exec's "not found".
func tool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	return name
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// runTool runs ip or tc with args and returns an error holding the command
// line and the tool's own message, on one line.
func runTool(name string, args ...string) error {
	_, err := toolOutput(name, args...)
	return err
}

// toolOutput runs ip or tc with args, bounded by toolTimeout, and returns
// what it printed; its error is runTool's.
func toolOutput(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool(name), args...).CombinedOutput()
	if err == nil {
		return out, nil
	}
	msg := oneLine(string(out))
	if msg == "" || ctx.Err() != nil {
		msg = err.Error()
	}
	return out, fmt.Errorf("%s %s: %s", name, strings.Join(args, " "), msg)
}

// oneLine joins a tool's output lines with "; ", for error messages.
func oneLine(s string) string {
	var lines []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

var (
	availableOnce = sync.OnceValue(checkAvailable)
	netemOnce     = sync.OnceValue(checkNetem)
)

// Available returns nil if this process can make network namespaces
// (Netns), or a one-line reason why not: not root (no CAP_NET_ADMIN and
// CAP_SYS_ADMIN), ip or tc not installed, or `ip netns add` failing. It
// tries once, with a namespace it deletes at once, and caches the answer.
func Available() error { return availableOnce() }

// NetemAvailable returns nil if Available holds and the kernel has the
// netem qdisc, or a one-line reason why not. It tries netem once on the
// loopback device of a scratch namespace it deletes, and caches the
// answer.
func NetemAvailable() error { return netemOnce() }

func checkAvailable() error {
	for _, t := range []string{"ip", "tc"} {
		if tool(t) == t {
			return fmt.Errorf("network namespaces: %s not found (install iproute2)", t)
		}
	}
	if missing := missingCaps(); missing != "" {
		return fmt.Errorf("network namespaces need root: uid %d lacks %s", os.Geteuid(), missing)
	}
	probe := nsBase() + "-p"
	if err := runTool("ip", "netns", "add", probe); err != nil {
		return fmt.Errorf("network namespaces: %v", err)
	}
	if err := runTool("ip", "netns", "del", probe); err != nil {
		return fmt.Errorf("network namespaces: %v", err)
	}
	return nil
}

// missingCaps names the capabilities, of those namespaces need, that this
// process does not have in effect: CAP_SYS_ADMIN to make and enter a
// namespace, CAP_NET_ADMIN to configure links and qdiscs in it.
func missingCaps() string {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "a readable /proc/self/status"
	}
	var eff uint64
	for l := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			eff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	var missing []string
	for _, c := range []struct {
		bit  uint
		name string
	}{{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}} {
		if eff&(1<<c.bit) == 0 {
			missing = append(missing, c.name)
		}
	}
	return strings.Join(missing, " and ")
}

func checkNetem() error {
	if err := Available(); err != nil {
		return err
	}
	scratch := nsBase() + "-n"
	if err := runTool("ip", "netns", "add", scratch); err != nil {
		return fmt.Errorf("netem: %v", err)
	}
	defer runTool("ip", "netns", "del", scratch)
	return tcNetem(runTool("ip", "netns", "exec", scratch, tool("tc"), "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"))
}

// tcNetem explains tc's cryptic answer to a kernel without netem.
func tcNetem(err error) error {
	if err != nil && strings.Contains(err.Error(), "qdisc kind is unknown") {
		return fmt.Errorf("the kernel lacks the netem qdisc (sch_netem; try modprobe sch_netem): %v", err)
	}
	return err
}

func randomHex() string { return fmt.Sprintf("%08x", rand.Uint32()) }

// nsBase starts the names of this process's namespaces: "ps-PID-HEX".
// The pid lets a later process delete the namespaces of one that died
// before it could (removeStale).
func nsBase() string { return fmt.Sprintf("ps-%d-%s", os.Getpid(), randomHex()) }

// removeStale deletes, once per process, the namespaces that processes
// no longer alive left behind: a test binary killed at its timeout, or
// Ctrl-C'd, never runs its cleanups.
var removeStale = sync.OnceFunc(removeStaleNamespaces)

// staleName matches the names nsBase makes, and only those.
var staleName = regexp.MustCompile(`^ps-([0-9]+)-[0-9a-f]{8}-[cdpn]$`)

func removeStaleNamespaces() {
	ents, _ := os.ReadDir(filepath.Dir(netnsPath("x")))
	for _, e := range ents {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		// A pid of another PID namespace looks dead from here: leave a
		// namespace that still has processes in it.
		out, err := toolOutput("ip", "netns", "pids", e.Name())
		if err == nil && len(strings.TrimSpace(string(out))) == 0 {
			runTool("ip", "netns", "del", e.Name())
		}
	}
}

// Netns is a pair of network namespaces joined by a veth pair: a client
// namespace and a daemon namespace, each with one end of the link, an
// address of one /30 and lo up. A test runs the daemon and its workers in
// one and the load in the other, and shapes the link between them with
// netem. Its methods are safe for concurrent use.
type Netns struct {
	client, daemon         string // namespace names
	clientLink, daemonLink string // veth ends
	clientAddr, daemonAddr netip.Addr
	prefix                 netip.Prefix

	mu   sync.Mutex
	live []string // namespaces made and not yet deleted, in creation order
}

// inUse holds the /30s of this process's live Netns: two pairs in
// separate namespaces could share one, but distinct addresses keep logs
// and packet captures unambiguous.
var inUse sync.Map // netip.Prefix → struct{}

// NewNetns creates two namespaces, "ps-PID-ID-c" (client) and
// "ps-PID-ID-d" (daemon) for this process's PID and a random ID, a veth pair
// joining them (the ends "psIDc" and "psIDd", named only inside them), addresses .1 (client) and .2 (daemon) of a random /30 in
// 10.0.0.0/8, and brings both ends and lo up. It needs Available; on any
// error it deletes whatever it had made and returns the error with the
// failing command's message. The caller must Close the Netns.
func NewNetns() (*Netns, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	removeStale()
	return newNetns(nsBase(), "ps"+randomHex(), reservePrefix())
}

// reservePrefix picks a random /30 in 10.0.0.0/8 that no live Netns of
// this process has, and marks it taken until the Netns made on it closes.
func reservePrefix() netip.Prefix {
	for {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 10<<24|rand.Uint32()&0x00fffffc)
		prefix := netip.PrefixFrom(netip.AddrFrom4(b), 30)
		if _, taken := inUse.LoadOrStore(prefix, struct{}{}); !taken {
			return prefix
		}
	}
}

// newNetns makes the namespaces base-c and base-d with the veth ends
// linkc and linkd, on prefix from reservePrefix (released on failure or
// Close).
func newNetns(base, link string, prefix netip.Prefix) (*Netns, error) {
	n := &Netns{
		client: base + "-c", daemon: base + "-d",
		clientLink: link + "c", daemonLink: link + "d",
		clientAddr: prefix.Addr().Next(), prefix: prefix,
	}
	n.daemonAddr = n.clientAddr.Next()
	if err := n.create(); err != nil {
		if cerr := n.Close(); cerr != nil {
			err = fmt.Errorf("%w (cleaning up: %v)", err, cerr)
		}
		return nil, fmt.Errorf("network namespaces: %w", err)
	}
	return n, nil
}

func (n *Netns) create() error {
	for _, ns := range []string{n.client, n.daemon} {
		if err := runTool("ip", "netns", "add", ns); err != nil {
			return err
		}
		n.mu.Lock()
		n.live = append(n.live, ns)
		n.mu.Unlock()
	}
	// Each end is made straight in its namespace, so that no name is ever
	// taken in ours.
	if err := runTool("ip", "link", "add", n.clientLink, "netns", n.client, "type", "veth", "peer", "name", n.daemonLink, "netns", n.daemon); err != nil {
		return err
	}
	bits := strconv.Itoa(n.prefix.Bits())
	for _, end := range []struct {
		ns, link string
		addr     netip.Addr
	}{{n.client, n.clientLink, n.clientAddr}, {n.daemon, n.daemonLink, n.daemonAddr}} {
		for _, args := range [][]string{
			{"addr", "add", end.addr.String() + "/" + bits, "dev", end.link},
			{"link", "set", end.link, "up"},
			{"link", "set", "lo", "up"},
		} {
			if err := runTool("ip", append([]string{"-n", end.ns}, args...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// Client is the client namespace's name, for Do and Command.
func (n *Netns) Client() string { return n.client }

// Daemon is the daemon namespace's name, for Do and Command.
func (n *Netns) Daemon() string { return n.daemon }

// ClientAddr is the address of the client namespace's end of the link.
func (n *Netns) ClientAddr() netip.Addr { return n.clientAddr }

// DaemonAddr is the address of the daemon namespace's end of the link:
// the one a daemon in that namespace listens on for clients.
func (n *Netns) DaemonAddr() netip.Addr { return n.daemonAddr }

// ClientLink is the name of the veth end in the client namespace.
func (n *Netns) ClientLink() string { return n.clientLink }

// DaemonLink is the name of the veth end in the daemon namespace, the one
// ApplyNetem shapes.
func (n *Netns) DaemonLink() string { return n.daemonLink }

// Close deletes both namespaces; deleting a namespace deletes its end of
// the veth pair, and so the pair. A process still running in a namespace
// keeps it alive, unnamed, until it exits. Close may be called more than
// once; a namespace it fails to delete is tried again on the next call,
// and the error names it.
func (n *Netns) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	var left []string
	for _, ns := range n.live {
		if err := runTool("ip", "netns", "del", ns); err != nil {
			if _, serr := os.Stat(netnsPath(ns)); serr == nil {
				errs = append(errs, err)
				left = append(left, ns)
			}
		}
	}
	n.live = left
	if len(left) == 0 {
		inUse.Delete(n.prefix)
	}
	return errors.Join(errs...)
}

// netnsPath is where `ip netns add` mounts the namespace NAME.
func netnsPath(name string) string {
	if _, err := os.Stat("/run/netns"); err != nil {
		return "/var/run/netns/" + name // NETNS_RUN_DIR of older distributions without /run
	}
	return "/run/netns/" + name
}

// Command returns the command name args… to be run inside namespace ns
// (`ip netns exec NS NAME ARGS…`, which execs NAME: the process started
// is NAME's, so signals reach it directly). Its environment, output and
// SysProcAttr are the caller's to set as for any exec.Cmd.
func (n *Netns) Command(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command(tool("ip"), append([]string{"netns", "exec", ns, name}, args...)...)
}

// Do runs f on an OS thread switched into namespace ns, and returns f's
// error. Sockets f makes belong to ns and stay there after Do returns, so
// a test can listen in one namespace and dial from the other without
// child processes; goroutines f starts run in the process's namespace, not
// ns. A panic in f is raised again in the caller. If the namespace cannot
// be entered, f does not run and the error says why; if the thread cannot
// return to the process's namespace the thread is discarded (it exits,
// locked, with the goroutine Do runs f on) and the error says so too.
func (n *Netns) Do(ns string, f func() error) error {
	target, err := unix.Open(netnsPath(ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	defer unix.Close(target)
	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	// A goroutine of its own, because a thread that fails to switch back
	// must end with the goroutine that holds it, and the caller's goes on.
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("netns: this thread's namespace: %w", err)}
			return
		}
		defer unix.Close(home)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("netns %s: entering: %w", ns, err)}
			return
		}
		var r result
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.panicked, r.panicVal = true, p
				}
			}()
			r.err = f()
		}()
		if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
			r.err = errors.Join(r.err, fmt.Errorf("netns %s: returning (thread discarded): %w", ns, err))
		} else {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// ApplyNetem puts spec s (a netem fault: delay, jitter, loss, reorder) on
// the daemon end of the link as its root qdisc, replacing any netem there:
// packets leaving the daemon's namespace are delayed, so every round trip
// between the namespaces grows by delay, as `tc qdisc add dev eth0 root
// netem delay …` on a server does. It fails, with tc's message on one
// line, for a spec of another fault or where the kernel lacks netem.
func (n *Netns) ApplyNetem(s Spec) error {
	if s.Name != "netem" {
		return fmt.Errorf("ApplyNetem: fault %q is not netem", s.String())
	}
	args := append([]string{"qdisc", "replace", "dev", n.daemonLink, "root"}, netemArgs(s)...)
	return tcNetem(n.tc(args...))
}

// ClearNetem removes the daemon end's root qdisc, restoring the default.
// A link without netem is no error; a qdisc tc fails to remove is, with
// tc's message.
func (n *Netns) ClearNetem() error {
	err := n.tc("qdisc", "del", "dev", n.daemonLink, "root")
	if err == nil {
		return nil
	}
	out, serr := toolOutput("ip", "netns", "exec", n.daemon, tool("tc"), "qdisc", "show", "dev", n.daemonLink)
	if serr == nil && !strings.Contains(string(out), "netem") {
		return nil // nothing to remove: the goal is reached
	}
	return err
}

func (n *Netns) tc(args ...string) error {
	// ip netns exec looks a bare name up on its own PATH, which under sudo
	// may lack /usr/sbin: give it the tc that Available found.
	return runTool("ip", append([]string{"netns", "exec", n.daemon, tool("tc")}, args...)...)
}

// netemArgs is the netem part of a tc command line for spec s. Times go
// in microseconds, which every tc reads, where Go's "1m0s" is not.
func netemArgs(s Spec) []string {
	us := func(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) + "us" }
	pct := func(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }
	a := []string{"netem"}
	if s.Has("delay") {
		a = append(a, "delay", us(s.Duration("delay", 0)))
		if s.Has("jitter") {
			a = append(a, us(s.Duration("jitter", 0)))
		}
	}
	if s.Has("loss") {
		a = append(a, "loss", pct(s.Percent("loss", 0)))
	}
	if s.Has("reorder") {
		a = append(a, "reorder", pct(s.Percent("reorder", 0)))
	}
	return a
}
