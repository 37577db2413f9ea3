package conformance

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
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
	// NotReached counts the specs in the pass's focus it never ran: it
	// stopped first (its timeout, or an interrupt).
	NotReached int
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

// Complete reports whether every spec of the pass ran to a result.
func (s Summary) Complete() bool { return len(s.Interrupted) == 0 && s.NotReached == 0 }

// ReadJUnit reads the report the suite wrote for pass p.
func ReadJUnit(file string, p Pass) (Summary, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Summary{}, err
	}
	return ParseJUnit(data, p)
}

// ParseJUnit reads the bytes of pass p's report; p's focus and skip tell
// the specs it did not reach from those outside it. The suite's setup and teardown nodes
// ([SynchronizedBeforeSuite] and the like) count only when they failed.
func ParseJUnit(data []byte, p Pass) (Summary, error) {
	focus, err := regexp.Compile(p.Focus)
	if err != nil {
		return Summary{}, fmt.Errorf("pass %s: focus: %w", p.Name, err)
	}
	skip := regexp.MustCompile(`$^`) // matches nothing
	if p.Skip != "" {
		if skip, err = regexp.Compile(p.Skip); err != nil {
			return Summary{}, fmt.Errorf("pass %s: skip: %w", p.Name, err)
		}
	}
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
				switch {
				case setup:
				case focus.MatchString(k.Name) && !skip.MatchString(k.Name):
					s.NotReached++
				default:
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

// ReadReports reads the whole set's reports in dir (junit-parallel.xml
// and junit-serial.xml, as `make conformance` writes them; a subset's
// report is not part of the set) into one summary, and names them.
func ReadReports(dir string) (Summary, []string, error) {
	var total Summary
	var names []string
	for _, p := range []Pass{Parallel, Serial} {
		f := filepath.Join(dir, "junit-"+p.Name+".xml")
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		s, err := ReadJUnit(f, p)
		if err != nil {
			return total, names, fmt.Errorf("%s: %w", f, err)
		}
		total = total.Add(s)
		names = append(names, filepath.Base(f))
	}
	if len(names) == 0 {
		return total, nil, fmt.Errorf("no junit-parallel.xml or junit-serial.xml in %s", dir)
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
	s.NotReached += o.NotReached
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
	fmt.Fprintf(&b, "- **%d passed, %d failed, %d skipped, %d interrupted, %d not reached** in %s (%d specs of the suite are outside the passes' focus)\n",
		len(s.Passed), len(s.Failed), len(s.Skipped), len(s.Interrupted), s.NotReached, s.Took.Round(time.Second), s.NotSelected)
	if !s.Complete() {
		fmt.Fprintf(&b, "- **incomplete**: the passes stopped before every spec ran\n")
	}
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
