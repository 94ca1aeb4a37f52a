// Package certpool reads PEM files of CA certificates, for the clients that
// trust a private or test CA: the proxy's backend_ca, ACME's ca_roots and
// wssproxy probe's -ca. It is shared so that the data path (package proxy)
// need not import tlsconf, and with it ACME.
package certpool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// ReadFile reads a PEM file of CA certificates into a pool. data is the
// file's content, for callers that notice when it changes.
func ReadFile(file string) (pool *x509.CertPool, data []byte, err error) {
	data, err = os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	pool = x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return pool, data, nil
}
