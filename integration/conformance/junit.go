package conformance

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Case is one spec of a report.
type Case struct {
	Name string
	Took time.Duration
	// Message is the failure's or the skip's reason, first line only.
	Message string
}

// Summary is what a report says.
type Summary struct {
	Passed, Failed, Skipped []Case
	// Interrupted are the specs running when the pass was interrupted
	// (its timeout, or an operator's Ctrl-C): neither passed nor failed.
	Interrupted []Case
	// NotSelected counts the specs outside the pass's focus (the JUnit
	// report lists every spec of the suite, skipped without a reason).
	NotSelected int
	Took        time.Duration
}

// junit is the part of the JUnit XML the suite writes that a summary needs.
type junit struct {
	Suites []struct {
		Time  float64 `xml:"time,attr"`
		Cases []struct {
			Name    string  `xml:"name,attr"`
			Time    float64 `xml:"time,attr"`
			Status  string  `xml:"status,attr"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// ReadJUnit reads a report the suite wrote.
func ReadJUnit(file string) (Summary, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Summary{}, err
	}
	return ParseJUnit(data)
}

// ParseJUnit reads a report's bytes. The suite's setup and teardown nodes
// ([SynchronizedBeforeSuite] and the like) count only when they failed.
func ParseJUnit(data []byte) (Summary, error) {
	var j junit
	if err := xml.Unmarshal(data, &j); err != nil {
		return Summary{}, fmt.Errorf("JUnit report: %w", err)
	}
	var s Summary
	for _, suite := range j.Suites {
		s.Took += time.Duration(suite.Time * float64(time.Second))
		for _, c := range suite.Cases {
			// Specs are named "[It] <full text> [labels]".
			k := Case{Name: strings.TrimPrefix(c.Name, "[It] "), Took: time.Duration(c.Time * float64(time.Second))}
			setup := suiteNode(c.Name)
			switch {
			case c.Status == "interrupted":
				if c.Error != nil {
					k.Message = firstLine(c.Error.Message, c.Error.Text)
				}
				s.Interrupted = append(s.Interrupted, k)
			case c.Failure != nil:
				k.Message = firstLine(c.Failure.Message, c.Failure.Text)
				s.Failed = append(s.Failed, k)
			case c.Error != nil:
				k.Message = firstLine(c.Error.Message, c.Error.Text)
				s.Failed = append(s.Failed, k)
			case c.Skipped != nil && c.Skipped.Message == "skipped":
				if !setup {
					s.NotSelected++
				}
			case c.Skipped != nil:
				if !setup {
					k.Message = firstLine(c.Skipped.Message)
					s.Skipped = append(s.Skipped, k)
				}
			case !setup:
				s.Passed = append(s.Passed, k)
			}
		}
	}
	for _, l := range [][]Case{s.Passed, s.Failed, s.Skipped, s.Interrupted} {
		sort.Slice(l, func(a, b int) bool { return l[a].Name < l[b].Name })
	}
	return s, nil
}

// ReadReports reads every pass's report in dir (junit-<pass>.xml, as
// `make conformance` writes them) into one summary, and names them.
func ReadReports(dir string) (Summary, []string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "junit-*.xml"))
	if err != nil || len(files) == 0 {
		return Summary{}, nil, fmt.Errorf("no junit-*.xml in %s (%v)", dir, err)
	}
	sort.Strings(files)
	var total Summary
	var names []string
	for _, f := range files {
		s, err := ReadJUnit(f)
		if err != nil {
			return total, names, fmt.Errorf("%s: %w", f, err)
		}
		total = total.Add(s)
		names = append(names, filepath.Base(f))
	}
	return total, names, nil
}

// suiteNode tells the suite's own setup and report nodes from specs.
func suiteNode(name string) bool {
	for _, p := range []string{"[BeforeSuite]", "[AfterSuite]", "[SynchronizedBeforeSuite]", "[SynchronizedAfterSuite]",
		"[ReportBeforeSuite]", "[ReportAfterSuite]", "[DeferCleanup (Suite)]"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Add merges another pass's summary into s.
func (s Summary) Add(o Summary) Summary {
	s.Passed = append(s.Passed, o.Passed...)
	s.Failed = append(s.Failed, o.Failed...)
	s.Skipped = append(s.Skipped, o.Skipped...)
	s.Interrupted = append(s.Interrupted, o.Interrupted...)
	s.NotSelected += o.NotSelected
	s.Took += o.Took
	return s
}

func firstLine(texts ...string) string {
	for _, t := range texts {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		line, _, _ := strings.Cut(t, "\n")
		if len(line) > 300 {
			line = line[:300] + "..."
		}
		return line
	}
	return ""
}

// Markdown is the summary as docs/conformance/summary.md shows it.
func (s Summary) Markdown(title string, facts []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", title)
	for _, f := range facts {
		fmt.Fprintf(&b, "- %s\n", f)
	}
	fmt.Fprintf(&b, "- **%d passed, %d failed, %d skipped, %d interrupted** in %s (%d specs of the suite outside the passes' focus)\n",
		len(s.Passed), len(s.Failed), len(s.Skipped), len(s.Interrupted), s.Took.Round(time.Second), s.NotSelected)
	section := func(name string, cases []Case, withReason bool) {
		if len(cases) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n## %s (%d)\n\n", name, len(cases))
		for _, c := range cases {
			if withReason && c.Message != "" {
				fmt.Fprintf(&b, "- %s  \n  %s\n", c.Name, c.Message)
			} else {
				fmt.Fprintf(&b, "- %s (%s)\n", c.Name, c.Took.Round(time.Second))
			}
		}
	}
	section("Failed", s.Failed, true)
	section("Interrupted (running when the pass was stopped)", s.Interrupted, false)
	section("Skipped", s.Skipped, true)
	section("Passed", s.Passed, false)
	return b.String()
}
