//! `metrics`: the app's own count of what TCP cannot see, read from its
//! Prometheus or OpenMetrics endpoint — for instance the calls in progress
//! on multiplexed HTTP/2 connections. Series are picked by name and labels;
//! the value is their sum, and each of them. Where a stack counts calls
//! started and calls finished instead (go-grpc-prometheus), `minus` names
//! the second: the value is the difference.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::http::Get;
use super::{Own, Sample};
use lameduck_core::{Metrics, ProbeValue, Series};

/// The largest endpoint read (a Spring Boot app's is ~200 KB).
const MAX_BODY: usize = 4 << 20;

/// The most series kept in a reading.
const MAX_SERIES: usize = 64;

/// `metrics: { url: http://127.0.0.1:9090/metrics, name: app_requests_in_flight,
/// labels: { method: POST } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The app's metrics endpoint.
    #[serde(deserialize_with = "super::http::url")]
    pub url: String,
    /// The series' name, as the app exposes it.
    pub name: String,
    /// Labels a series must have, with these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Series to take off the sum (with the same labels): the finished
    /// calls, where `name` counts the started ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minus: Option<String>,
}

pub struct MetricsProbe {
    get: Get,
    name: String,
    labels: BTreeMap<String, String>,
    minus: Option<String>,
}

impl MetricsProbe {
    pub fn new(spec: &Spec, own: Own) -> Self {
        MetricsProbe {
            get: Get::new(&spec.url, own),
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            minus: spec.minus.clone(),
        }
    }

    /// The series picked from the exposition `text`.
    fn pick(&self, text: &str) -> Result<Metrics, String> {
        let lines = text.lines().map(|line| Ok(line.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines)
            .map_err(|e| format!("not Prometheus text: {e}"))?;
        let mut metrics = Metrics {
            sum: 0.0,
            series: Vec::new(),
        };
        for sample in scrape.samples {
            let sign = if sample.metric == self.name {
                1.0
            } else if self.minus.as_deref() == Some(sample.metric.as_str()) {
                -1.0
            } else {
                continue;
            };
            let wanted = self
                .labels
                .iter()
                .all(|(k, v)| sample.labels.get(k) == Some(v.as_str()));
            let value = match sample.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                // A histogram or a summary is not a count of work.
                _ => continue,
            };
            if !wanted || !value.is_finite() {
                continue;
            }
            metrics.sum += sign * value;
            if sign > 0.0 && metrics.series.len() < MAX_SERIES {
                let mut labels: Vec<(String, String)> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.sort();
                metrics.series.push(Series { labels, value });
            }
        }
        Ok(metrics)
    }
}

impl Sample for MetricsProbe {
    async fn sample(&mut self) -> ProbeValue {
        let (status, body) = match self.get.fetch(MAX_BODY + 1).await {
            Ok(answer) => answer,
            Err(e) => return ProbeValue::Failed(e),
        };
        if !(200..300).contains(&status) {
            return ProbeValue::Failed(format!("the metrics endpoint answered {status}"));
        }
        if body.len() > MAX_BODY {
            return ProbeValue::Failed(format!(
                "the metrics endpoint answered more than {MAX_BODY} bytes"
            ));
        }
        match self.pick(&String::from_utf8_lossy(&body)) {
            Ok(metrics) => ProbeValue::Metrics(metrics),
            Err(e) => ProbeValue::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(name: &str, labels: &[(&str, &str)]) -> MetricsProbe {
        MetricsProbe {
            get: Get::new("http://127.0.0.1:1/metrics", Own::default()),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            minus: None,
        }
    }

    #[test]
    fn started_minus_handled_is_in_progress() {
        let text = "\
grpc_server_started_total{grpc_method=\"Get\",grpc_type=\"unary\"} 120
grpc_server_started_total{grpc_method=\"Watch\",grpc_type=\"server_stream\"} 7
grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Get\",grpc_type=\"unary\"} 117
grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Get\",grpc_type=\"unary\"} 1
";
        let mut unary = probe("grpc_server_started_total", &[("grpc_type", "unary")]);
        unary.minus = Some("grpc_server_handled_total".into());
        let m = unary.pick(text).unwrap();
        assert_eq!((m.sum, m.series.len()), (2.0, 1));
    }

    const EXPOSITION: &str = "\
# HELP grpc_server_started_total calls started
# TYPE grpc_server_started_total counter
grpc_server_started_total{grpc_method=\"Get\",grpc_type=\"unary\"} 120
# HELP app_requests_in_flight calls in progress
# TYPE app_requests_in_flight gauge
app_requests_in_flight{method=\"POST\",path=\"/a\"} 2
app_requests_in_flight{method=\"GET\",path=\"/b\"} 1
app_requests_in_flight{method=\"POST\",path=\"/c\"} 0
# TYPE http_seconds histogram
http_seconds_bucket{le=\"0.1\"} 3
http_seconds_sum 0.2
http_seconds_count 3
";

    #[test]
    fn series_are_picked_by_name_and_labels() {
        let all = probe("app_requests_in_flight", &[])
            .pick(EXPOSITION)
            .unwrap();
        assert_eq!(all.sum, 3.0);
        assert_eq!(all.series.len(), 3);
        let post = probe("app_requests_in_flight", &[("method", "POST")])
            .pick(EXPOSITION)
            .unwrap();
        assert_eq!(post.sum, 2.0);
        assert_eq!(
            post.series[0].labels,
            [
                ("method".to_string(), "POST".to_string()),
                ("path".into(), "/a".into())
            ]
        );
        let none = probe("nothing_here", &[]).pick(EXPOSITION).unwrap();
        assert_eq!((none.sum, none.series.len()), (0.0, 0));
    }

    #[test]
    fn many_series_are_summed_and_a_bounded_few_kept() {
        let text: String = (0..1_000)
            .map(|i| format!("busy{{worker=\"{i}\"}} 1\n"))
            .collect();
        let busy = probe("busy", &[]).pick(&text).unwrap();
        assert_eq!(busy.sum, 1_000.0);
        assert_eq!(busy.series.len(), MAX_SERIES);
    }

    /// An app whose `/metrics` never ends: read up to the bound and
    /// refused, not read until the probe's timeout.
    #[test]
    fn an_endless_metrics_answer_is_refused_at_its_bound() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = [0; 1024];
            let _ = conn.read(&mut head);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n");
            let line = b"requests_in_flight 1\n".repeat(4096);
            // Until the probe hangs up.
            while conn.write_all(&line).is_ok() {}
        });
        let mut probe = probe("requests_in_flight", &[]);
        probe.get = Get::new(&format!("http://127.0.0.1:{port}/metrics"), Own::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let value = runtime.block_on(probe.sample());
        assert_eq!(
            value,
            ProbeValue::Failed(format!(
                "the metrics endpoint answered more than {MAX_BODY} bytes"
            ))
        );
    }
}
