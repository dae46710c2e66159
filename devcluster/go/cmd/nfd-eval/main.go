// Command nfd-eval evaluates image compatibility specs with NFD's own code, the way
// `nfd compat validate-node` does (failFast off, rule vars feeding the rule.matched
// back-reference), so that our Python engine can be checked against it case by case.
//
// Input: JSON lines on stdin, each {"id": any, "spec": "<raw spec YAML>", "features":
// {flags, attributes, instances}, "tags": [...]}. Output: one JSON line per input line,
// {"id", "error", "sets": [{"tag", "weight", "rules": [{"name", "isMatch"}]}]}.
// "error" is non-empty when NFD failed, either parsing the spec or evaluating a rule; then
// "sets" holds what was evaluated before the failure.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"sigs.k8s.io/yaml"

	compatv1alpha1 "sigs.k8s.io/node-feature-discovery/api/image-compatibility/v1alpha1"
	nfdv1alpha1 "sigs.k8s.io/node-feature-discovery/api/nfd/v1alpha1"
	"sigs.k8s.io/node-feature-discovery/pkg/apis/nfd/nodefeaturerule"
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
	Tag    string       `json:"tag"`
	Weight int          `json:"weight"`
	Rules  []ruleResult `json:"rules"`
}

type evalResult struct {
	ID    json.RawMessage `json:"id"`
	Error string          `json:"error"`
	Sets  []setResult     `json:"sets"`
}

func evaluate(c *evalCase) evalResult {
	res := evalResult{ID: c.ID, Sets: []setResult{}}
	spec := compatv1alpha1.Spec{}
	if err := yaml.Unmarshal([]byte(c.Spec), &spec); err != nil {
		res.Error = fmt.Sprintf("spec: %v", err)
		return res
	}
	features := &c.Features
	if features.Flags == nil {
		features.Flags = map[string]nfdv1alpha1.FlagFeatureSet{}
	}
	if features.Attributes == nil {
		features.Attributes = map[string]nfdv1alpha1.AttributeFeatureSet{}
	}
	if features.Instances == nil {
		features.Instances = map[string]nfdv1alpha1.InstanceFeatureSet{}
	}
	for _, compat := range spec.Compatibilties {
		if len(c.Tags) > 0 && !slices.Contains(c.Tags, compat.Tag) {
			continue
		}
		set := setResult{Tag: compat.Tag, Weight: compat.Weight, Rules: []ruleResult{}}
		for _, rule := range compat.Rules {
			out, err := nodefeaturerule.ExecuteGroupRule(&rule, features, false)
			if err != nil {
				res.Sets = append(res.Sets, set)
				res.Error = fmt.Sprintf("rule %q: %v", rule.Name, err)
				return res
			}
			set.Rules = append(set.Rules, ruleResult{Name: rule.Name, IsMatch: out.MatchStatus.IsMatch})
			features.InsertAttributeFeatures(nfdv1alpha1.RuleBackrefDomain, nfdv1alpha1.RuleBackrefFeature, out.Vars)
		}
		res.Sets = append(res.Sets, set)
	}
	return res
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 && string(line) != "\n" {
			var c evalCase
			var res evalResult
			if jerr := json.Unmarshal(line, &c); jerr != nil {
				res = evalResult{Error: fmt.Sprintf("input: %v", jerr), Sets: []setResult{}}
			} else {
				res = evaluate(&c)
			}
			if eerr := enc.Encode(res); eerr != nil {
				fmt.Fprintln(os.Stderr, eerr)
				os.Exit(1)
			}
			// Flush per line so a driver can stream cases and read verdicts back.
			out.Flush()
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
