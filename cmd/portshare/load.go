package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/portshare/portshare/faults"
	"github.com/portshare/portshare/loadgen"
)

func newLoadCmd() *cobra.Command {
	var (
		target, arrival, jsonPath, send, method string
		connect                                 string
		newConns                                bool
		rate, rampTo                            float64
		concurrency, messages, size, maxIn      int
		count                                   int64
		seed                                    uint64
		duration, hold, sendDelay               time.Duration
		connectTimeout, timeout, lateAfter      time.Duration
		clientFaults, clientRatios              []string
	)
	cmd := &cobra.Command{
		Use:   "load --target URI (--rate R | --concurrency C) (--duration D | --count N) [--client-fault SPEC [--client-fault-ratio R]]…",
		Short: "Generate load: net.tcp sessions, HTTP requests or a TCP connection storm",
		Long: `Generate load against a shared port (or any server) and measure it.

The target's scheme picks the protocol:
  net.tcp://HOST:PORT/PATH  MC-NMF duplex sessions: preamble (Via = the target),
                            PreambleAck, --messages round trips of --message-size
                            bytes, End
  http://… or https://…     one request per session (keep-alive; a connection
                            each with --new-connections)
  tcp://HOST:PORT           a connection storm: connect, --send after
                            --send-delay, hold --hold, close

--rate is the open model: sessions start at that rate (--arrival constant or
poisson; --ramp-to ramps linearly to a second rate over --duration) whatever
the server does, and latency counts from each session's intended start, so a
stalled server shows up as latency. A send the generator could not make on
time counts as late. --concurrency is the closed model: C clients, each
starting its next session when the last one ended (HTTP runs on hey's
requester).

Every session ends in one outcome: ok, refused, connect_timeout, reset, eof,
timeout, fault:NAME, http:CODE, protocol_error, client_error, aborted or
error. A progress line shows on a terminal; the summary goes to stdout;
--json writes the result file (loadgen/FORMAT.md). Ctrl-C stops early and
still writes the results.

--client-fault SPEC (repeatable) makes a share of the sessions misbehaving
clients, given by --client-fault-ratio R (repeatable, paired with the faults
in order; a single fault without one takes every session). Which sessions
are faulty is evenly spread and repeatable: 0.05 of 2,000 sessions is
exactly 100. at= and for= count from the run's start. The summary and the
result file report the faulty sessions apart (client_faults), so the
outcomes and latencies are still those of the normal clients. oversize-via
pads the Via (net.tcp; default 4096 bytes, MC-NMF's limit is 2048) or the
request path (http; default a 64 KiB head, above any max_http_head);
unknown-route asks for /portshare-unknown-route/. Client faults need a
clear protocol: tcp:// storms take silent, connect-close and rst:when=connect,
https:// targets those and garbage; closed-model http takes none.
Client faults:
` + faults.Help(faults.Client),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if target == "" {
				return usagef("--target is required, e.g. --target net.tcp://127.0.0.1:8808/orders/")
			}
			t, err := loadgen.ParseTarget(target)
			if err != nil {
				return usageError{err}
			}
			if connect != "" {
				if _, _, err := net.SplitHostPort(connect); err != nil {
					return usagef("--connect %q: want HOST:PORT", connect)
				}
				t.Addr = connect // loadgen refuses it for closed-model http (hey)
			}
			o := loadgen.Options{
				Target: t, Concurrency: concurrency, Duration: duration, Count: count,
				Messages: messages, MessageSize: size, Method: method, NewConnections: newConns,
				SendDelay: sendDelay, Hold: hold,
				ConnectTimeout: connectTimeout, Timeout: timeout, MaxInFlight: maxIn, LateAfter: lateAfter,
			}
			if f.Changed("rate") == f.Changed("concurrency") {
				return usagef("give one of --rate R (open model) and --concurrency C (closed model)")
			}
			if !f.Changed("duration") && !f.Changed("count") {
				return usagef("give --duration D or --count N: a load run must stop by itself")
			}
			if f.Changed("rate") {
				over := duration
				if rampTo > 0 && over <= 0 {
					return usagef("--ramp-to ramps over --duration: give --duration")
				}
				if o.Pacer, err = loadgen.NewPacer(arrival, rate, rampTo, over, seed); err != nil {
					return usageError{err}
				}
			} else {
				if concurrency < 1 {
					return usagef("--concurrency must be at least 1, got %d", concurrency)
				}
				for _, name := range []string{"arrival", "ramp-to", "seed"} {
					if f.Changed(name) {
						return usagef("--%s shapes the open model's arrivals: use it with --rate, not --concurrency", name)
					}
				}
			}
			if send != "" {
				s, err := strconv.Unquote(`"` + send + `"`)
				if err != nil {
					return usagef("--send %q: use Go string escapes (\\x00, \\r\\n)", send)
				}
				o.Send = []byte(s)
			}
			if t.Protocol != loadgen.TCP && (send != "" || hold > 0 || sendDelay > 0) {
				return usagef("--send, --send-delay and --hold are for tcp:// connection storms")
			}
			if o.ClientFaults, err = parseClientFaults(clientFaults, clientRatios); err != nil {
				return err
			}
			// Make the result file first, so a run is not lost to a bad
			// path; it replaces FILE only once the results are in it.
			var out *resultFile
			if jsonPath != "" && jsonPath != "-" {
				if out, err = createResultFile(jsonPath); err != nil {
					return usagef("--json: %v", err)
				}
				defer out.discard()
			}
			raiseNOFILE()

			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			stderr := cmd.ErrOrStderr()
			summary := cmd.OutOrStdout()
			if jsonPath == "-" {
				summary = stderr
			}
			var progress *progressLine
			if isTerminal(stderr) {
				progress = &progressLine{w: stderr}
				o.Progress = progress.show
			}
			res, err := loadgen.Run(ctx, o)
			progress.end()
			var oe loadgen.OptionsError
			if errors.As(err, &oe) {
				return usageError{err}
			} else if err != nil {
				return err
			}
			if err := loadgen.WriteSummary(summary, res); err != nil {
				return err
			}
			switch {
			case jsonPath == "-":
				return res.WriteJSON(cmd.OutOrStdout())
			case out != nil:
				if err := out.commit(res); err != nil {
					return fmt.Errorf("writing the results to %s: %v", jsonPath, err)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "`URI` to load: net.tcp://, http://, https:// or tcp://")
	f.StringVar(&connect, "connect", "", "connect to `HOST:PORT` instead of the target's host and port, which still go in the Via, Host header and TLS server name")
	f.Float64Var(&rate, "rate", 0, "open model: sessions per second (`R`)")
	f.StringVar(&arrival, "arrival", "constant", "open-model arrivals: constant or poisson")
	f.Float64Var(&rampTo, "ramp-to", 0, "open model: ramp the rate linearly to `R2` over --duration")
	f.Uint64Var(&seed, "seed", 1, "seed of the poisson arrivals")
	f.IntVar(&concurrency, "concurrency", 0, "closed model: clients (`C`)")
	f.DurationVar(&duration, "duration", 0, "send for this long (`D`)")
	f.Int64Var(&count, "count", 0, "send this many sessions (`N`)")
	f.IntVar(&messages, "messages", 1, "net.tcp: round trips per session (`K`)")
	f.IntVar(&size, "message-size", 0, "net.tcp: bytes per message (default 64); http: body size with --method POST (`S`)")
	f.StringVar(&method, "method", "GET", "http: request method")
	f.BoolVar(&newConns, "new-connections", false, "http: a connection per session (Connection: close) instead of keep-alive: against a shared port, a hand-off per session")
	f.StringVar(&send, "send", "", "tcp: bytes to send after connecting (Go escapes)")
	f.DurationVar(&sendDelay, "send-delay", 0, "tcp: wait this long before --send")
	f.DurationVar(&hold, "hold", 0, "tcp: keep each connection open this long")
	f.DurationVar(&connectTimeout, "connect-timeout", 3*time.Second, "give up a connect after this long")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "give up a session after this long")
	f.IntVar(&maxIn, "max-inflight", 0, "cap on sessions in flight (default: the open-files limit less 64)")
	f.DurationVar(&lateAfter, "late-after", time.Millisecond, "a send this far behind its intended time counts as late")
	f.StringArrayVar(&clientFaults, "client-fault", nil, "misbehaving client `SPEC` for a share of the sessions (repeatable; see above)")
	f.StringArrayVar(&clientRatios, "client-fault-ratio", nil, "share of the sessions the client fault in the same position takes, 0 < `R` <= 1 (or a percentage, 5%)")
	f.StringVar(&jsonPath, "json", "", "write the result file to `FILE` (- for stdout; the summary then goes to stderr)")
	return cmd
}

// parseClientFaults pairs --client-fault specs with --client-fault-ratio
// values by position. A single fault without a ratio takes every session.
// Errors are usage errors, one line each.
func parseClientFaults(specs, ratios []string) ([]loadgen.ClientFault, error) {
	switch {
	case len(specs) == 0 && len(ratios) > 0:
		return nil, usagef("--client-fault-ratio is the share of a --client-fault: give the fault too")
	case len(ratios) == 0 && len(specs) > 1:
		return nil, usagef("give a --client-fault-ratio for each of the %d --client-fault specs, in the same order", len(specs))
	case len(ratios) > 0 && len(ratios) != len(specs):
		return nil, usagef("%d --client-fault specs but %d --client-fault-ratio values: give one ratio per fault, in the same order", len(specs), len(ratios))
	}
	var out []loadgen.ClientFault
	for i, text := range specs {
		s, err := faults.Parse(faults.Client, text)
		if err != nil {
			return nil, usagef("--client-fault: %v", err)
		}
		r := 1.0
		if len(ratios) > 0 {
			// loadgen refuses a share of 0 (and sums over 1) itself.
			if r, err = faults.ParseShare(ratios[i]); err != nil {
				return nil, usagef("--client-fault-ratio %q (for %s): want a share above 0 and at most 1, such as 0.05 or 5%%", ratios[i], text)
			}
		}
		out = append(out, loadgen.ClientFault{Spec: s, Ratio: r})
	}
	return out, nil
}

// raiseNOFILE lifts the soft open-files limit to the hard one: a load
// generator's sessions are its descriptors.
func raiseNOFILE() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressLine redraws one status line on a terminal.
type progressLine struct {
	w     io.Writer
	drawn bool
}

func (p *progressLine) show(s loadgen.Snapshot) {
	fmt.Fprintf(p.w, "\r\033[K%4.0fs  %7.1f/s  ok %d  errors %d  late %d  in flight %d  p99 %s",
		s.Elapsed.Seconds(), s.Rate, s.OK, s.Errors, s.Late, s.InFlight, loadgen.FormatDuration(s.P99))
	p.drawn = true
}

func (p *progressLine) end() {
	if p != nil && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// resultFile is a result file being made (an outFile): created before
// the run, so a bad path is found before the load, and committed once the
// results are in it.
type resultFile struct{ *outFile }

func createResultFile(path string) (*resultFile, error) {
	o, err := createOutFile(path)
	if err != nil {
		return nil, err
	}
	return &resultFile{o}, nil
}

func (r *resultFile) commit(res *loadgen.Result) error {
	if err := res.WriteJSON(r.outFile); err != nil {
		return err
	}
	return r.outFile.commit()
}
