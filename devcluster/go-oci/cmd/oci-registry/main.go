// Command oci-registry serves go-containerregistry's in-memory OCI registry on loopback, with
// the OCI 1.1 referrers API switchable, so tests cover both the referrers API and the
// `sha256-<hex>` tag-schema fallback against one implementation.
//
// It prints "listening on HOST:PORT" once the socket is bound, so a launcher can pass port 0.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	referrers := flag.Bool("referrers", true, "serve the OCI 1.1 referrers API (GET /v2/<name>/referrers/<digest>)")
	quiet := flag.Bool("quiet", false, "do not log each request")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen %s: %v", *listen, err)
	}
	opts := []registry.Option{registry.WithReferrersSupport(*referrers)}
	if *quiet {
		opts = append(opts, registry.Logger(log.New(nopWriter{}, "", 0)))
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
