package testutil

import (
	"context"
	"fmt"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/portshare/portshare/sharer/refworker"
	"github.com/portshare/portshare/sharer/worker"
)

// WorkerMain is a worker process for tests (run it through
// RunChildIfRequested):
//
//	MODE SOCKET NAME CREDIT ROUTE…
//
// It registers ROUTEs with the daemon at SOCKET and prints "registered";
// MODE echo then serves echo sessions, MODE hang never accepts. It exits 0
// on SIGTERM, and 3 (after printing "register error: …") if registering
// fails.
func WorkerMain(args []string) int {
	if len(args) < 5 {
		fmt.Println("usage: MODE SOCKET NAME CREDIT ROUTE…")
		return 2
	}
	mode, socket, name := args[0], args[1], args[2]
	credit, _ := strconv.Atoi(args[3])
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := worker.Listen(ctx, args[4:], worker.Options{ControlSocket: socket, Name: name, MaxInflight: credit})
	if err != nil {
		fmt.Println("register error:", err)
		return 3
	}
	fmt.Println("registered")
	if mode == "hang" {
		<-ctx.Done()
		return 0
	}
	refworker.Serve(ctx, ln, refworker.Options{Name: name, Mode: refworker.Echo})
	return 0
}
