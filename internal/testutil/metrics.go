package testutil

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric is the value of the gauge or counter called name in reg whose
// label has value (compared without case); -1 when there is none.
func Metric(t testing.TB, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && strings.EqualFold(lp.GetValue(), value) {
					return m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
