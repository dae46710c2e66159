// Command oci-registry serves go-containerregistry's in-memory OCI registry on loopback, with
// the OCI 1.1 referrers API switchable, so tests cover both the referrers API and the
// `sha256-<hex>` tag-schema fallback against one implementation.
//
// go-containerregistry v0.22.1 lists referrers with artifactType taken from the config's
// media type only and ignores the artifactType filter. The distribution spec says a
// manifest's own artifactType comes first, and `oras attach` (OCI 1.1 manifests with an empty
// config) relies on that, so referrers listings are corrected here: artifactType from the
// manifest, the filter applied, and OCI-Filters-Applied set.
//
// It prints "listening on HOST:PORT" once the socket is bound, so a launcher can pass port 0.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

var referrersPath = regexp.MustCompile(`^/v2/(.+)/referrers/([^/]+)$`)

type descriptor map[string]any

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type manifestTypes struct {
	ArtifactType string `json:"artifactType"`
	Config       struct {
		MediaType string `json:"mediaType"`
	} `json:"config"`
}

// fixReferrers wraps the registry handler and rewrites referrers listings per OCI 1.1.
func fixReferrers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		match := referrersPath.FindStringSubmatch(r.URL.Path)
		if r.Method != http.MethodGet || match == nil {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var listing index
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &listing) != nil {
			copyResponse(w, rec)
			return
		}
		wanted := r.URL.Query().Get("artifactType")
		kept := []descriptor{}
		for _, d := range listing.Manifests {
			digest, _ := d["digest"].(string)
			mreq := httptest.NewRequest(http.MethodGet, "/v2/"+match[1]+"/manifests/"+digest, nil)
			mrec := httptest.NewRecorder()
			next.ServeHTTP(mrec, mreq)
			var types manifestTypes
			if mrec.Code == http.StatusOK && json.Unmarshal(mrec.Body.Bytes(), &types) == nil {
				if types.ArtifactType != "" {
					d["artifactType"] = types.ArtifactType
				} else {
					d["artifactType"] = types.Config.MediaType
				}
			}
			if wanted == "" || d["artifactType"] == wanted {
				kept = append(kept, d)
			}
		}
		listing.Manifests = kept
		body, err := json.Marshal(listing)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if wanted != "" {
			w.Header().Set("OCI-Filters-Applied", "artifactType")
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = bytes.NewReader(rec.Body.Bytes()).WriteTo(w)
}

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
	handler := registry.New(opts...)
	if *referrers {
		handler = fixReferrers(handler)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
