package status

import "time"

// RenewResult is what a renewal pass did.
type RenewResult struct {
	At        time.Time `json:"at"`
	Reason    string    `json:"reason"`
	Renewed   []string  `json:"renewed,omitempty"`
	Restarted []string  `json:"restarted,omitempty"`
	Error     string    `json:"error,omitempty"`
}
