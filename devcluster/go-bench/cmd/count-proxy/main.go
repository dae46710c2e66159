// Command count-proxy is a reverse proxy that counts the bytes of each call it forwards, by
// the last element of the request path (filter, prioritize, ...). The benchmark puts it
// between kube-scheduler and an extender for a short, untimed run to measure the sizes of
// requests and answers on the wire, without changing the extender.
//
// Usage:
//
//	count-proxy -listen 127.0.0.1:0 -upstream http://127.0.0.1:8888/
//
// It prints "listening on HOST:PORT" on stderr once it accepts connections. GET /proxy-stats
// answers JSON with, per verb, the calls forwarded and the request and answer bytes (bodies
// as sent, without HTTP headers).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"sync"
)

type verbStats struct {
	Calls         int64 `json:"calls"`
	RequestBytes  int64 `json:"request_bytes"`
	ResponseBytes int64 `json:"response_bytes"`
}

type counter struct {
	mu    sync.Mutex
	stats map[string]*verbStats
}

func (c *counter) add(verb string, in, out int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.stats[verb]
	if !ok {
		st = &verbStats{}
		c.stats[verb] = st
	}
	st.Calls++
	st.RequestBytes += in
	st.ResponseBytes += out
}

// countingBody counts what is read through it and reports the total once, at Close.
type countingBody struct {
	io.ReadCloser
	n    int64
	done func(int64)
	once sync.Once
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *countingBody) Close() error {
	b.once.Do(func() { b.done(b.n) })
	return b.ReadCloser.Close()
}

type requestSize struct{}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	upstream := flag.String("upstream", "", "the extender's URL")
	flag.Parse()
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("-upstream %q: want a URL like http://127.0.0.1:8888/", *upstream)
	}

	c := &counter{stats: map[string]*verbStats{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		verb := path.Base(resp.Request.URL.Path)
		in, _ := resp.Request.Context().Value(requestSize{}).(*int64)
		resp.Body = &countingBody{ReadCloser: resp.Body, done: func(out int64) {
			var sent int64
			if in != nil {
				sent = *in
			}
			c.add(verb, sent, out)
		}}
		return nil
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /proxy-stats", func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		out, err := json.Marshal(c.stats)
		c.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		size := int64(len(body))
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = size
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestSize{}, &size)))
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
