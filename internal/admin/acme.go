package admin

import (
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wssproxy/wssproxy/tlsconf"
)

// ACMERenewals is a collector of the renewals of ACME certificates, per
// host of tls.acme.hosts (their expiry is in CertExpiry's metric):
//
//	wssproxy_acme_renewal_errors_total{host}: failed orders since start
//	wssproxy_acme_next_renewal_timestamp_seconds{host}: the next planned
//	  renewal (or retry after a failure)
//	wssproxy_acme_last_renewal_error_timestamp_seconds{host,error}: when
//	  the last order failed, and its error (absent before a failure)
func ACMERenewals(certs func() []tlsconf.Info) prometheus.Collector {
	return acmeCollector{certs}
}

var (
	acmeErrorsDesc = prometheus.NewDesc("wssproxy_acme_renewal_errors_total",
		"Failed ACME orders (first orders and renewals) since start, per host.", []string{"host"}, nil)
	acmeNextDesc = prometheus.NewDesc("wssproxy_acme_next_renewal_timestamp_seconds",
		"When the ACME certificate of a host is next to be renewed, or an order retried (Unix seconds).", []string{"host"}, nil)
	acmeLastErrDesc = prometheus.NewDesc("wssproxy_acme_last_renewal_error_timestamp_seconds",
		"When the last ACME order for a host failed (Unix seconds), with its error.", []string{"host", "error"}, nil)
)

type acmeCollector struct{ certs func() []tlsconf.Info }

func (acmeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- acmeErrorsDesc
	ch <- acmeNextDesc
	ch <- acmeLastErrDesc
}

func (c acmeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, info := range c.certs() {
		if !info.ACME || len(info.Names) == 0 {
			continue
		}
		host := info.Names[0]
		ch <- prometheus.MustNewConstMetric(acmeErrorsDesc, prometheus.CounterValue, float64(info.RenewalErrors), host)
		if !info.NextRenewal.IsZero() {
			ch <- prometheus.MustNewConstMetric(acmeNextDesc, prometheus.GaugeValue, float64(info.NextRenewal.Unix()), host)
		}
		if info.LastError != "" {
			// The error may carry the CA's raw response body: a label
			// value must be valid UTF-8 or MustNewConstMetric panics.
			msg := strings.ToValidUTF8(info.LastError, "\uFFFD")
			if len(msg) > 300 {
				cut := 300
				for cut > 0 && !utf8.RuneStart(msg[cut]) {
					cut--
				}
				msg = msg[:cut] + "…"
			}
			ch <- prometheus.MustNewConstMetric(acmeLastErrDesc, prometheus.GaugeValue, float64(info.LastErrorAt.Unix()), host, msg)
		}
	}
}
