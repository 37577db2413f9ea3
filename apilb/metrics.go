package apilb

import "github.com/prometheus/client_golang/prometheus"

var (
	descHealthy = prometheus.NewDesc("ecom_agent_apilb_endpoint_healthy",
		"1 when the API load balancer finds an API server endpoint healthy (its /readyz answers 200), 0 when unhealthy or not probed yet.",
		[]string{"endpoint"}, nil)
	descConns = prometheus.NewDesc("ecom_agent_apilb_endpoint_connections",
		"Connections the API load balancer proxies to an API server endpoint now.",
		[]string{"endpoint"}, nil)
	descConnsTotal = prometheus.NewDesc("ecom_agent_apilb_endpoint_connections_total",
		"Connections the API load balancer proxied to an API server endpoint since it learnt the endpoint.",
		[]string{"endpoint"}, nil)
	descDropped = prometheus.NewDesc("ecom_agent_apilb_dropped_connections_total",
		"Client connections the API load balancer closed because no API server endpoint accepted them.",
		nil, nil)
)

// Collector returns a Prometheus collector of the balancer's
// per-endpoint health and connections, read at scrape time.
func (l *LB) Collector() prometheus.Collector { return collector{l} }

type collector struct{ l *LB }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHealthy, descConns, descConnsTotal, descDropped} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	type row struct {
		addr          string
		healthy       float64
		conns, totals float64
	}
	l := c.l
	l.mu.Lock()
	rows := make([]row, 0, len(l.eps))
	for _, ep := range l.eps {
		r := row{addr: ep.addr, conns: float64(len(ep.conns)), totals: float64(ep.total)}
		if ep.state == healthy {
			r.healthy = 1
		}
		rows = append(rows, r)
	}
	dropped := float64(l.dropped)
	l.mu.Unlock()

	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, r.healthy, r.addr)
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, r.conns, r.addr)
		ch <- prometheus.MustNewConstMetric(descConnsTotal, prometheus.CounterValue, r.totals, r.addr)
	}
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, dropped)
}
