// The log-shipper image's program (the backend pod's logging sidecar, in
// place of Fluent Bit): a module of its own, standard library only, so
// it builds and tests apart from the agent.
module github.com/ecom-platform/ecom-agent/images/log-shipper

go 1.26
