// Command null-extender is a kube-scheduler extender that judges nothing: filter passes every
// node it is sent and prioritize scores each of them with a constant. It is the floor of the
// extender protocol: what any extender costs the scheduler through HTTP and JSON before it
// computes anything. The benchmark runs it with the same verbs and answer shapes as the
// profile it stands beside.
//
// Usage:
//
//	null-extender -listen 127.0.0.1:0 [-verbs filter,prioritize] [-score 0] [-prioritize-empty]
//	              [-prioritize-fraction 1] [-pass-fraction 1] [-reasons=true]
//	              [-reason "null-extender: rejected"]
//
// -pass-fraction below 1 makes filter reject a fixed share of the names it is sent (chosen
// by a hash of each name, so the same nodes every time), each with -reason in FailedNodes
// unless -reasons=false: the answer shape of an extender that rejects that share, and the
// same number of nodes left for the scheduler to score. -prioritize-fraction below 1 makes
// prioritize list only that share of the names (an answer that leaves out the lowest score).
//
// It prints "listening on HOST:PORT" on stderr once it accepts connections. GET /stats
// answers JSON with, per verb, the calls served and the request and answer bytes.
//
// Requests are nodeCacheCapable ones (NodeNames); with full Nodes (nodeCacheCapable false)
// filter echoes the Nodes list as it came, so the answer shape matches that mode too.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
)

// args is the part of kube-scheduler's ExtenderArgs the answers need; the Pod is skipped
// (json.RawMessage keeps it undecoded, as a real extender would decode it only when needed).
type args struct {
	Pod       json.RawMessage  `json:"Pod"`
	Nodes     *json.RawMessage `json:"Nodes"`
	NodeNames *[]string        `json:"NodeNames"`
}

type nodeList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	} `json:"items"`
}

type filterResult struct {
	Nodes                      *json.RawMessage  `json:"Nodes"`
	NodeNames                  *[]string         `json:"NodeNames"`
	FailedNodes                map[string]string `json:"FailedNodes"`
	FailedAndUnresolvableNodes map[string]string `json:"FailedAndUnresolvableNodes"`
	Error                      string            `json:"Error"`
}

type hostPriority struct {
	Host  string `json:"Host"`
	Score int64  `json:"Score"`
}

type verbStats struct {
	Calls         int64 `json:"calls"`
	RequestBytes  int64 `json:"request_bytes"`
	ResponseBytes int64 `json:"response_bytes"`
}

type server struct {
	score              int64
	prioritizeEmpty    bool
	prioritizeFraction float64
	passFraction       float64
	reason             string
	reasons            bool
	mu                 sync.Mutex
	stats              map[string]*verbStats
}

func (s *server) count(verb string, in, out int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats[verb]
	st.Calls++
	st.RequestBytes += int64(in)
	st.ResponseBytes += int64(out)
}

func (s *server) decode(w http.ResponseWriter, r *http.Request) (*args, []byte, bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, nil, false
	}
	var a args
	if err := json.Unmarshal(body, &a); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, nil, false
	}
	return &a, body, true
}

func (s *server) reply(w http.ResponseWriter, verb string, in int, answer any) {
	out, err := json.Marshal(answer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	s.count(verb, in, len(out))
}

func (s *server) filter(w http.ResponseWriter, r *http.Request) {
	a, body, ok := s.decode(w, r)
	if !ok {
		return
	}
	res := filterResult{NodeNames: a.NodeNames, Nodes: a.Nodes}
	if s.passFraction < 1 && a.NodeNames != nil {
		passed := make([]string, 0, len(*a.NodeNames))
		res.FailedNodes = map[string]string{}
		for _, name := range *a.NodeNames {
			if picked(name, "filter", s.passFraction) {
				passed = append(passed, name)
			} else if s.reasons {
				res.FailedNodes[name] = s.reason
			}
		}
		res.NodeNames = &passed
	}
	s.reply(w, "filter", len(body), res)
}

// picked chooses a stable share of the names by a hash of each name; the verb salts it, so
// that filter's and prioritize's shares are independent draws.
func picked(name, verb string, fraction float64) bool {
	h := fnv.New32a()
	_, _ = h.Write([]byte(verb + "/" + name))
	return float64(h.Sum32()%10000) < fraction*10000
}

// names lists the nodes of a request in either mode (names, or full Node objects).
func names(a *args) ([]string, error) {
	if a.NodeNames != nil {
		return *a.NodeNames, nil
	}
	if a.Nodes == nil {
		return nil, nil
	}
	var list nodeList
	if err := json.Unmarshal(*a.Nodes, &list); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(list.Items))
	for _, item := range list.Items {
		out = append(out, item.Metadata.Name)
	}
	return out, nil
}

func (s *server) prioritize(w http.ResponseWriter, r *http.Request) {
	a, body, ok := s.decode(w, r)
	if !ok {
		return
	}
	hosts := []hostPriority{}
	if !s.prioritizeEmpty {
		nodes, err := names(a)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		hosts = make([]hostPriority, 0, len(nodes))
		for _, n := range nodes {
			if s.prioritizeFraction >= 1 || picked(n, "prioritize", s.prioritizeFraction) {
				hosts = append(hosts, hostPriority{Host: n, Score: s.score})
			}
		}
	}
	s.reply(w, "prioritize", len(body), hosts)
}

func (s *server) serveStats(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out, err := json.Marshal(s.stats)
	s.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	verbs := flag.String("verbs", "filter,prioritize", "verbs served (a comma list of filter, prioritize)")
	prefix := flag.String("path-prefix", "/", "URL path under which the verbs are served")
	score := flag.Int64("score", 0, "the score prioritize gives every node")
	prioritizeEmpty := flag.Bool("prioritize-empty", false,
		"prioritize answers an empty list (the shape of an answer that leaves out nodes at the lowest score)")
	passFraction := flag.Float64("pass-fraction", 1,
		"share of the names filter passes (by a hash of each name); the others fail with -reason")
	reason := flag.String("reason", "null-extender: rejected", "the reason of a node filter rejects")
	reasons := flag.Bool("reasons", true,
		"list the nodes filter rejects in FailedNodes (false: leave them out, as an answer that names them only when none passes)")
	prioritizeFraction := flag.Float64("prioritize-fraction", 1,
		"share of the names prioritize lists (by a hash of each name; the shape of an answer that leaves out the lowest score)")
	flag.Parse()

	s := &server{
		score:              *score,
		prioritizeEmpty:    *prioritizeEmpty,
		prioritizeFraction: *prioritizeFraction,
		passFraction:       *passFraction,
		reason:             *reason,
		reasons:            *reasons,
		stats:              map[string]*verbStats{},
	}
	mux := http.NewServeMux()
	for _, verb := range strings.Split(*verbs, ",") {
		switch verb = strings.TrimSpace(verb); verb {
		case "filter":
			mux.HandleFunc("POST "+*prefix+"filter", s.filter)
		case "prioritize":
			mux.HandleFunc("POST "+*prefix+"prioritize", s.prioritize)
		case "":
		default:
			fmt.Fprintf(os.Stderr, "unknown verb %q (filter, prioritize)\n", verb)
			os.Exit(2)
		}
		if verb != "" {
			s.stats[verb] = &verbStats{}
		}
	}
	mux.HandleFunc("GET /stats", s.serveStats)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
