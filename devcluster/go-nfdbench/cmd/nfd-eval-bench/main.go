// Command nfd-eval-bench times NFD's own rule evaluator inside the process, so that the cost of
// our Python engine can be set beside it without process start-up or JSON in the figure.
//
// Input: the JSON lines devcluster/go/cmd/nfd-eval reads, each
//
//	{"id": any, "spec": "<raw spec YAML>", "features": {flags, attributes, instances}, "tags": [...]}
//
// Each case's spec is read once; then every compatibility set is evaluated against the
// features the way nodevalidator.Execute does (nodefeaturerule.ExecuteGroupRule per rule,
// failFast off, each rule's vars inserted into rule.matched), -k times over a fresh copy of
// the features (copied outside the timed part: evaluation writes the back-references).
//
// Output: one JSON line per input line, in order:
//
//	{"id", "sets", "nsPerSet", "error"}
//
// "nsPerSet" is the median over the -k repeats of the time for all the case's sets divided by
// their number. "error" is set (and nothing timed) when the spec cannot be read or a rule
// fails to evaluate: such a case measures an error path, not the evaluator.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	compatv1alpha1 "sigs.k8s.io/node-feature-discovery/api/image-compatibility/v1alpha1"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"
	"sigs.k8s.io/node-feature-discovery/pkg/apis/nfd/nodefeaturerule"
)

type benchCase struct {
	ID       json.RawMessage      `json:"id"`
	Spec     string               `json:"spec"`
	Features nfdv1alpha1.Features `json:"features"`
	Tags     []string             `json:"tags"`
}

type benchResult struct {
	ID       json.RawMessage `json:"id"`
	Sets     int             `json:"sets"`
	NsPerSet float64         `json:"nsPerSet"`
	Error    string          `json:"error"`
}

// recovered runs f and turns a panic into an error.
func recovered(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return f()
}

// withDefaults gives decoded Features the non-nil top-level maps source.GetAllFeatures returns.
func withDefaults(f *nfdv1alpha1.Features) *nfdv1alpha1.Features {
	if f.Flags == nil {
		f.Flags = map[string]nfdv1alpha1.FlagFeatureSet{}
	}
	if f.Attributes == nil {
		f.Attributes = map[string]nfdv1alpha1.AttributeFeatureSet{}
	}
	if f.Instances == nil {
		f.Instances = map[string]nfdv1alpha1.InstanceFeatureSet{}
	}
	return f
}

// evaluateSets is the loop of nodevalidator.Execute without its report: it returns how many
// sets were evaluated.
func evaluateSets(spec *compatv1alpha1.Spec, features *nfdv1alpha1.Features, tags []string) (int, error) {
	n := 0
	for _, compat := range spec.Compatibilties {
		if len(tags) > 0 && !slices.Contains(tags, compat.Tag) {
			continue
		}
		n++
		for _, rule := range compat.Rules {
			out, err := nodefeaturerule.ExecuteGroupRule(&rule, features, false)
			if err != nil {
				return n, fmt.Errorf("rule %q: %w", rule.Name, err)
			}
			features.InsertAttributeFeatures(nfdv1alpha1.RuleBackrefDomain, nfdv1alpha1.RuleBackrefFeature, out.Vars)
		}
	}
	return n, nil
}

func bench(c *benchCase, repeats int) benchResult {
	res := benchResult{ID: c.ID}
	spec := &compatv1alpha1.Spec{}
	if err := recovered(func() error { return yaml.Unmarshal([]byte(c.Spec), spec) }); err != nil {
		res.Error = "spec: " + err.Error()
		return res
	}
	withDefaults(&c.Features)
	samples := make([]time.Duration, 0, repeats)
	for range repeats {
		features := c.Features.DeepCopy()
		var sets int
		start := time.Now()
		err := recovered(func() (err error) {
			sets, err = evaluateSets(spec, features, c.Tags)
			return err
		})
		took := time.Since(start)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Sets = sets
		samples = append(samples, took)
	}
	if res.Sets == 0 {
		return res
	}
	slices.Sort(samples)
	res.NsPerSet = float64(samples[len(samples)/2].Nanoseconds()) / float64(res.Sets)
	return res
}

func main() {
	repeats := flag.Int("k", 101, "evaluations per case; the median is reported")
	flag.Parse()
	// ExecuteGroupRule logs at level 0 for feature names without a dot.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)

	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var c benchCase
			var res benchResult
			if jerr := json.Unmarshal(line, &c); jerr != nil {
				res = benchResult{Error: fmt.Sprintf("input: %v", jerr)}
			} else {
				res = bench(&c, max(*repeats, 1))
			}
			if eerr := enc.Encode(res); eerr != nil {
				fmt.Fprintln(os.Stderr, eerr)
				os.Exit(1)
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
