// Command nfd-eval evaluates image compatibility specs with NFD's own code, the way
// `nfd compat validate-node` does (failFast off, rule vars feeding the rule.matched
// back-reference, the --tags filter), so that our Python engine can be checked against it
// case by case.
//
// Input: JSON lines on stdin, each
//
//	{"id": any, "spec": "<raw spec YAML>", "features": {flags, attributes, instances}, "tags": [...]}
//
// Output: one JSON line per input line, in order, flushed after each line:
//
//	{"id", "error", "stage", "sets": [{"tag", "weight", "description", "rules": [{"name", "isMatch"}]}],
//	 "validateNode"}
//
// Each case is evaluated twice with NFD v0.18.x code:
//
//  1. A loop over the compatibility sets that mirrors nodevalidator.Execute and calls
//     nodefeaturerule.ExecuteGroupRule(&rule, features, false) per rule. It gives the per-rule
//     verdicts, including those before an evaluation error (validate-node prints nothing then).
//  2. The real nodevalidator.Execute, with the spec handed over by a stub artifact client and
//     the case's features served by the registered feature sources (no discovery runs). It is
//     the authority on whether validate-node fails at all: it also runs the report code, which
//     dereferences every expression (a null expression panics there even when the rule engine
//     never evaluated it).
//
// "error" is empty when NFD succeeded; otherwise "stage" says where it failed: "input" (the
// line is not valid JSON), "spec" (sigs.k8s.io/yaml could not read the spec into NFD's types),
// "rule" (ExecuteGroupRule returned an error or panicked; "sets" then ends with the set of
// that rule, holding the rules before it), "backref" (inserting a rule's vars into
// rule.matched panicked; "sets" ends with that rule), "validate-node" (only nodevalidator.Execute
// failed), or "internal" (the two evaluations disagree: a bug in this program).
// "validateNode" is nodevalidator.Execute's own error text, or "skipped: ..." when the
// features cannot be served through feature sources (a feature name without a dot).
//
// A panic inside NFD is recovered per case and reported as an error "panic: ...", so one
// case cannot end a batch.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	compatv1alpha1 "sigs.k8s.io/node-feature-discovery/api/image-compatibility/v1alpha1"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"
	"sigs.k8s.io/node-feature-discovery/pkg/apis/nfd/nodefeaturerule"
	nodevalidator "sigs.k8s.io/node-feature-discovery/pkg/client-nfd/compat/node-validator"
	"sigs.k8s.io/node-feature-discovery/source"
)

type evalCase struct {
	ID       json.RawMessage      `json:"id"`
	Spec     string               `json:"spec"`
	Features nfdv1alpha1.Features `json:"features"`
	Tags     []string             `json:"tags"`
}

type ruleResult struct {
	Name    string `json:"name"`
	IsMatch bool   `json:"isMatch"`
}

type setResult struct {
	Tag         string       `json:"tag"`
	Weight      int          `json:"weight"`
	Description string       `json:"description"`
	Rules       []ruleResult `json:"rules"`
}

type evalResult struct {
	ID           json.RawMessage `json:"id"`
	Error        string          `json:"error"`
	Stage        string          `json:"stage"`
	Sets         []setResult     `json:"sets"`
	ValidateNode string          `json:"validateNode"`
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

// withDefaults gives a decoded Features the non-nil top-level maps that
// source.GetAllFeatures always returns.
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

// evaluateRules mirrors the loop of nodevalidator.Execute, keeping the verdicts of the rules
// before an error.
func evaluateRules(spec *compatv1alpha1.Spec, features *nfdv1alpha1.Features, tags []string) ([]setResult, string, error) {
	sets := []setResult{}
	for _, compat := range spec.Compatibilties {
		if len(tags) > 0 && !slices.Contains(tags, compat.Tag) {
			continue
		}
		set := setResult{Tag: compat.Tag, Weight: compat.Weight, Description: compat.Description, Rules: []ruleResult{}}
		for _, rule := range compat.Rules {
			var out nodefeaturerule.GroupRuleOutput
			err := recovered(func() (err error) {
				out, err = nodefeaturerule.ExecuteGroupRule(&rule, features, false)
				return err
			})
			if err != nil {
				sets = append(sets, set)
				return sets, "rule", fmt.Errorf("rule %q: %w", rule.Name, err)
			}
			set.Rules = append(set.Rules, ruleResult{Name: rule.Name, IsMatch: out.MatchStatus.IsMatch})
			err = recovered(func() error {
				features.InsertAttributeFeatures(nfdv1alpha1.RuleBackrefDomain, nfdv1alpha1.RuleBackrefFeature, out.Vars)
				return nil
			})
			if err != nil {
				sets = append(sets, set)
				return sets, "backref", fmt.Errorf("inserting the vars of rule %q into rule.matched: %w", rule.Name, err)
			}
		}
		sets = append(sets, set)
	}
	return sets, "", nil
}

// caseSource is a feature source for a domain that NFD has no built-in source for.
type caseSource struct {
	name     string
	features *nfdv1alpha1.Features
}

func (s *caseSource) Name() string                       { return s.name }
func (s *caseSource) Discover() error                    { return nil }
func (s *caseSource) GetFeatures() *nfdv1alpha1.Features { return s.features }

// serveFeatures makes source.GetAllFeatures return exactly f: every registered feature source
// (the built-in ones return a pointer to their own Features, which is overwritten) gets its
// domain's part, and a caseSource is registered for any other domain.
func serveFeatures(f *nfdv1alpha1.Features) error {
	byDomain := map[string]*nfdv1alpha1.Features{}
	part := func(name string) (*nfdv1alpha1.Features, string, error) {
		domain, rest, ok := strings.Cut(name, ".")
		if !ok {
			return nil, "", fmt.Errorf("feature name %q has no domain", name)
		}
		if byDomain[domain] == nil {
			byDomain[domain] = nfdv1alpha1.NewFeatures()
		}
		return byDomain[domain], rest, nil
	}
	for name, set := range f.Flags {
		p, rest, err := part(name)
		if err != nil {
			return err
		}
		p.Flags[rest] = set
	}
	for name, set := range f.Attributes {
		p, rest, err := part(name)
		if err != nil {
			return err
		}
		p.Attributes[rest] = set
	}
	for name, set := range f.Instances {
		p, rest, err := part(name)
		if err != nil {
			return err
		}
		p.Instances[rest] = set
	}
	for domain := range byDomain {
		if source.GetFeatureSource(domain) == nil {
			source.Register(&caseSource{name: domain, features: nfdv1alpha1.NewFeatures()})
		}
	}
	for domain, s := range source.GetAllFeatureSources() {
		target := s.GetFeatures()
		if target == nil {
			return fmt.Errorf("source %q returns no features object", domain)
		}
		if p := byDomain[domain]; p != nil {
			*target = *p
		} else {
			*target = *nfdv1alpha1.NewFeatures()
		}
	}
	return nil
}

type artifactClient struct{ spec *compatv1alpha1.Spec }

func (c *artifactClient) FetchCompatibilitySpec(context.Context) (*compatv1alpha1.Spec, error) {
	return c.spec, nil
}

// validateNode runs the real nodevalidator.Execute on the case.
func validateNode(spec *compatv1alpha1.Spec, features *nfdv1alpha1.Features, tags []string) ([]*nodevalidator.CompatibilityStatus, error) {
	if err := serveFeatures(features); err != nil {
		return nil, errSkipped{err}
	}
	nv := nodevalidator.New(
		nodevalidator.WithArgs(&nodevalidator.Args{Tags: tags}),
		nodevalidator.WithArtifactClient(&artifactClient{spec}),
		nodevalidator.WithSources(map[string]source.FeatureSource{}),
	)
	var out []*nodevalidator.CompatibilityStatus
	err := recovered(func() (err error) {
		out, err = nv.Execute(context.Background())
		return err
	})
	return out, err
}

type errSkipped struct{ error }

func sameVerdicts(sets []setResult, status []*nodevalidator.CompatibilityStatus) bool {
	if len(sets) != len(status) {
		return false
	}
	for i, s := range sets {
		if len(s.Rules) != len(status[i].Rules) || s.Tag != status[i].Tag || s.Weight != status[i].Weight {
			return false
		}
		for j, r := range s.Rules {
			if r.Name != status[i].Rules[j].Name || r.IsMatch != status[i].Rules[j].IsMatch {
				return false
			}
		}
	}
	return true
}

// specCache holds the last spec read: a driver sends the cases of one spec in a row, and
// reading the YAML is most of the cost of a case. Nothing in NFD modifies a Spec.
type specCache struct {
	text string
	spec *compatv1alpha1.Spec
	err  error
}

func (c *specCache) get(text string) (*compatv1alpha1.Spec, error) {
	if (c.spec == nil && c.err == nil) || c.text != text {
		spec := &compatv1alpha1.Spec{}
		err := recovered(func() error { return yaml.Unmarshal([]byte(text), spec) })
		*c = specCache{text: text, spec: spec, err: err}
	}
	return c.spec, c.err
}

var specs specCache

func evaluate(c *evalCase) evalResult {
	res := evalResult{ID: c.ID, Sets: []setResult{}}
	spec, err := specs.get(c.Spec)
	if err != nil {
		res.Error, res.Stage = err.Error(), "spec"
		return res
	}

	sets, stage, ruleErr := evaluateRules(spec, withDefaults(c.Features.DeepCopy()), c.Tags)
	res.Sets = sets
	if ruleErr != nil {
		res.Error, res.Stage = ruleErr.Error(), stage
	}

	status, vnErr := validateNode(spec, withDefaults(c.Features.DeepCopy()), c.Tags)
	var skipped errSkipped
	switch {
	case errors.As(vnErr, &skipped):
		res.ValidateNode = "skipped: " + skipped.Error()
	case vnErr != nil:
		res.ValidateNode = vnErr.Error()
		if ruleErr == nil {
			res.Error, res.Stage = vnErr.Error(), "validate-node"
		}
	case ruleErr != nil:
		res.Error = fmt.Sprintf("internal: validate-node succeeded where ExecuteGroupRule failed (%v)", ruleErr)
		res.Stage = "internal"
	case !sameVerdicts(sets, status):
		res.Error, res.Stage = "internal: validate-node and the rule loop give different verdicts", "internal"
	}
	return res
}

func main() {
	verbose := flag.Bool("v", false, "let NFD's klog messages through to stderr")
	flag.Parse()
	if !*verbose {
		// ExecuteGroupRule logs at level 0 for feature names without a dot.
		klog.LogToStderr(false)
		klog.SetOutput(io.Discard)
	}

	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var c evalCase
			var res evalResult
			if jerr := json.Unmarshal(line, &c); jerr != nil {
				res = evalResult{Error: fmt.Sprintf("input: %v", jerr), Stage: "input", Sets: []setResult{}}
			} else {
				res = evaluate(&c)
			}
			if eerr := enc.Encode(res); eerr != nil {
				fmt.Fprintln(os.Stderr, eerr)
				os.Exit(1)
			}
			// Flush per line so a driver can stream cases and read verdicts back.
			if ferr := out.Flush(); ferr != nil {
				fmt.Fprintln(os.Stderr, ferr)
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
