package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// The output formats of -o, the same words on every command: table for
// people, json and yaml for programs.
const (
	outTable = "table"
	outJSON  = "json"
	outYAML  = "yaml"
)

// outputAliases are older names still accepted, and not shown in help:
// render and token create called their human form text.
var outputAliases = map[string]string{"text": outTable}

// outputValue is the -o flag: it refuses a format the command does not
// have while the command line is parsed, so a typo is a usage error
// (exit 64) that lists the valid ones.
type outputValue struct {
	format  *string
	formats []string
}

func (o *outputValue) String() string { return *o.format }
func (o *outputValue) Type() string   { return "format" }

func (o *outputValue) Set(s string) error {
	s = strings.ToLower(strings.TrimSpace(s))
	if alias, ok := outputAliases[s]; ok {
		s = alias
	}
	if !slices.Contains(o.formats, s) {
		return fmt.Errorf("want %s", orList(o.formats))
	}
	*o.format = s
	return nil
}

// addOutputFlag gives cmd -o/--output, table by default, accepting only
// table, json and yaml.
func addOutputFlag(cmd *cobra.Command, format *string) {
	formats := []string{outTable, outJSON, outYAML}
	*format = outTable
	cmd.Flags().VarP(&outputValue{format: format, formats: formats}, "output", "o",
		"output format: "+orList(formats))
}

// writeDocument prints v as JSON (indented) or YAML with the JSON names.
func writeDocument(w io.Writer, v any, format string) error {
	if format == outYAML {
		data, err := json.Marshal(v)
		if err == nil {
			data, err = yaml.JSONToYAML(data)
		}
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
