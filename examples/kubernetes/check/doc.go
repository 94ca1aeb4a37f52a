// Package check holds the test of examples/kubernetes, in a module of its
// own so that Kubernetes' API types (k8s.io/api and its tree) are no
// dependency of wssproxy's module. Run it with `go test ./...` here; .ci/run
// does.
package check
