//! What a scrape of `/metrics` returns: the values read once into a [`Scrape`], then written
//! by `prometheus-client`'s encoders in the Prometheus text format (0.0.4) or OpenMetrics.
//!
//! Values are plain atomics owned by what they count (see `metrics.rs`); the crate is used for
//! what it does well, the exposition formats, and never on the request path.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::telemetry::histogram::HistogramValues;

/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The content type of OpenMetrics text, served when the scraper's `Accept` asks for it.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label pairs of one sample.
pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
enum Value {
    Counter(u64),
    Gauge(i64),
    Histogram(HistogramValues),
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

/// Every family of one scrape, in the order added.
#[derive(Debug, Default)]
pub struct Scrape {
    families: Vec<Family>,
}

impl Scrape {
    fn family(&mut self, name: &'static str, help: &'static str, kind: MetricType) -> &mut Family {
        let found = self.families.iter().position(|f| f.name == name);
        let index = found.unwrap_or_else(|| {
            self.families.push(Family {
                name,
                help,
                kind,
                samples: Vec::new(),
            });
            self.families.len() - 1
        });
        &mut self.families[index]
    }

    /// A counter sample; `name` without the `_total` the encoder appends.
    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: Labels, value: u64) {
        let family = self.family(name, help, MetricType::Counter);
        family.samples.push((labels, Value::Counter(value)));
    }

    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: Labels, value: i64) {
        let family = self.family(name, help, MetricType::Gauge);
        family.samples.push((labels, Value::Gauge(value)));
    }

    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        values: HistogramValues,
    ) {
        let family = self.family(name, help, MetricType::Histogram);
        family.samples.push((labels, Value::Histogram(values)));
    }

    /// A family with no samples yet still gets its HELP and TYPE lines, so dashboards see the
    /// metric exists before the first event.
    pub fn declare_counter(&mut self, name: &'static str, help: &'static str) {
        self.family(name, help, MetricType::Counter);
    }

    /// The scrape in the Prometheus text format, or OpenMetrics text.
    pub fn encode(self, openmetrics: bool) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        let written = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        };
        written.expect("writing to a String does not fail");
        out
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            for (labels, value) in &family.samples {
                let mut sample = metric.encode_family(labels)?;
                match value {
                    Value::Counter(v) => sample.encode_counter::<NoLabelSet, u64, u64>(v, None)?,
                    Value::Gauge(v) => sample.encode_gauge(v)?,
                    Value::Histogram(h) => sample.encode_histogram::<NoLabelSet>(
                        h.sum_seconds,
                        h.count,
                        &h.buckets,
                        None,
                    )?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_in_the_prometheus_text_format() {
        let mut scrape = Scrape::default();
        scrape.counter("azimds_x", "Xs seen.", vec![("kind", "a\"b".into())], 3);
        scrape.gauge("azimds_y", "Ys now.", Vec::new(), -2);
        scrape.declare_counter("azimds_z", "Zs.");
        let text = scrape.encode(false);
        assert_eq!(
            text,
            "# HELP azimds_x_total Xs seen.\n# TYPE azimds_x_total counter\nazimds_x_total{kind=\"a\\\"b\"} 3\n\
             # HELP azimds_y Ys now.\n# TYPE azimds_y gauge\nazimds_y -2\n\
             # HELP azimds_z_total Zs.\n# TYPE azimds_z_total counter\n"
        );
    }
}
