package config

import _ "embed" // for Example

// Example is the commented example config, as packaging/config.toml ships
// it: every key, with its default where it has one (a test keeps the two
// files identical, and another that the defaults shown are the real ones).
// `ecom-agent config print-defaults` prints it.
//
//go:embed example.toml
var Example []byte
