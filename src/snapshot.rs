//! A point-in-time copy of every metric, the one shape that `/metrics`, `--test` and the
//! remote-write push all render from.
//!
//! The store produces families with the plugin's own labels (`model`, `quantile`, ...);
//! [`crate::labels::Labeler`] then adds instance labels, global labels and `agent_hostname`.

/// A label set: `(name, value)` pairs. After the labeler ran, sorted by name, no duplicates.
pub type Labels = Vec<(String, String)>;

/// Prometheus metric type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Summary,
    Histogram,
}

/// One metric family: a name, its help text, its type and its series.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Metric name, e.g. `ollama_response_duration_seconds`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub series: Vec<Series>,
}

/// One sample of a family. The exposed metric name is `family.name + suffix`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// `""` for plain series and summary quantiles, `"_sum"`, `"_count"`, `"_bucket"`.
    pub suffix: &'static str,
    pub labels: Labels,
    pub value: f64,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Family {
            name,
            help,
            kind,
            series: Vec::new(),
        }
    }

    /// Appends a series with the given suffix, labels and value.
    pub fn push(&mut self, suffix: &'static str, labels: Labels, value: f64) {
        self.series.push(Series {
            suffix,
            labels,
            value,
        });
    }
}
