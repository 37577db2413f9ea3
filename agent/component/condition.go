package component

import (
	"sync"

	"github.com/ecom-platform/ecom-agent/status"
)

// Condition is a component's current condition (what it waits for or
// cannot do), safe for concurrent use. The zero value has none.
type Condition struct {
	mu        sync.Mutex
	component string
	cur       *status.Condition
}

// NewCondition returns an empty condition of the named component.
func NewCondition(component string) *Condition {
	return &Condition{component: component}
}

// Set records a condition and reports whether it changed.
func (c *Condition) Set(reason status.Reason, message string) bool {
	return c.set(&status.Condition{Component: c.component, Reason: reason, Message: message})
}

// Refuse records a condition only an operator can end.
func (c *Condition) Refuse(reason status.Reason, message string) bool {
	return c.set(&status.Condition{Component: c.component, Reason: reason, Message: message, Refused: true})
}

// Clear removes the condition and reports whether there was one.
func (c *Condition) Clear() bool { return c.set(nil) }

func (c *Condition) set(n *status.Condition) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	same := (c.cur == nil && n == nil) || (c.cur != nil && n != nil && *c.cur == *n)
	c.cur = n
	return !same
}

// Get returns the condition, if there is one.
func (c *Condition) Get() (status.Condition, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return status.Condition{}, false
	}
	return *c.cur, true
}

// Report appends the condition, if any, to the status.
func (c *Condition) Report(s *status.Status) {
	if cond, ok := c.Get(); ok {
		s.Conditions = append(s.Conditions, cond)
	}
}
