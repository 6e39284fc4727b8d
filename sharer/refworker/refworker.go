// Package refworker is the reference worker behind `portshare worker`: an
// MC-NMF echo service, an HTTP service and an HTTPS service, each served on
// any net.Listener — the daemon's (package worker) or a socket of its own,
// the baseline that hand-off benchmarks compare against.
package refworker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"time"
)

// Mode is what the reference worker speaks.
type Mode string

const (
	Echo  Mode = "echo"
	HTTP  Mode = "http"
	HTTPS Mode = "https"
)

// ParseMode checks a --mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Echo, HTTP, HTTPS:
		return m, nil
	}
	return "", fmt.Errorf("mode %q is not one of echo, http, https", s)
}

// Options configure Serve.
type Options struct {
	Name string
	Mode Mode
	// MaxMessage bounds one echo envelope. Default 64 KiB.
	MaxMessage int
	// Idle closes a connection that sends nothing for this long. Default 2m.
	Idle time.Duration
}

// Serve serves ln until ctx is done or ln fails, then closes ln and waits
// for the connections it started. It returns nil after ctx is done.
func Serve(ctx context.Context, ln net.Listener, o Options) error {
	if o.MaxMessage <= 0 {
		o.MaxMessage = 64 << 10
	}
	if o.Idle <= 0 {
		o.Idle = 2 * time.Minute
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	switch o.Mode {
	case HTTP, HTTPS:
		return serveHTTP(ctx, ln, o)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		open[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			ServeEcho(c, o.Name, o.MaxMessage, o.Idle)
			mu.Lock()
			delete(open, c)
			mu.Unlock()
		})
	}
}

// Handler answers every request with 200, the header X-Portshare-Worker:
// NAME and the body "NAME METHOD PATH\n".
func Handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Portshare-Worker", name)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s %s %s\n", name, r.Method, r.URL.Path)
	})
}

func serveHTTP(ctx context.Context, ln net.Listener, o Options) error {
	if o.Mode == HTTPS {
		cfg, err := SelfSignedTLS(o.Name)
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, cfg)
	}
	srv := &http.Server{Handler: Handler(o.Name), ReadHeaderTimeout: 30 * time.Second, IdleTimeout: o.Idle}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	err := srv.Serve(ln)
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// SelfSignedTLS makes a TLS config with a fresh self-signed ECDSA
// certificate for name, localhost and the loopback addresses.
func SelfSignedTLS(name string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "portshare " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if name != "" && net.ParseIP(name) == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, nil
}
