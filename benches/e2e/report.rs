//! Samples, medians, the targets, and the Markdown table they end up in.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::dataset::{Dataset, Kind};
use crate::proxy::LinkShape;
use crate::registry::Requests;
use crate::tools::Tool;
use crate::{LinkKind, Scenario, link_name};

/// One tool's run of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub dataset: Kind,
    pub link: LinkKind,
    pub scenario: Scenario,
    pub tool: Tool,
    pub rep: usize,
    pub seconds: f64,
    pub peak_rss_kib: Option<u64>,
    /// Bytes the source sent through the shaped link (slow link only).
    pub link_down_bytes: Option<u64>,
    pub link_connections: Option<u64>,
    pub source_requests: Requests,
    pub dest_requests: Requests,
    /// The destination served exactly the source's tag → digest map afterwards.
    pub digests_match: bool,
}

impl Sample {
    /// A progress line for the terminal.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<10} {:<8} {:<11} rep {} {:<9} {:>8.3} s  {:>4} source requests ({} blob GETs)",
            self.dataset.short_name(),
            link_name(self.link),
            self.scenario.name(),
            self.rep + 1,
            self.tool.name(),
            self.seconds,
            self.source_requests.total(),
            self.source_requests.get("GET blob"),
        );
        if let (Some(bytes), Some(connections)) = (self.link_down_bytes, self.link_connections) {
            let _ = write!(
                line,
                ", {} over the link, {connections} connections",
                mb(bytes)
            );
        }
        if !self.digests_match {
            line.push_str("  DIGESTS DIFFER");
        }
        line
    }
}

/// Mirroring the 1 GiB layer.
#[derive(Debug, Clone, Serialize)]
pub struct RssSample {
    pub tool: Tool,
    pub seconds: f64,
    pub peak_rss_kib: Option<u64>,
    pub source_requests: Requests,
    pub digests_match: bool,
}

impl RssSample {
    pub fn line(&self) -> String {
        format!(
            "1 GiB layer: {:<9} {:>7.2} s, peak RSS {}{}",
            self.tool.name(),
            self.seconds,
            rss(self.peak_rss_kib),
            if self.digests_match {
                ""
            } else {
                "  DIGESTS DIFFER"
            }
        )
    }
}

/// What the probes measured on the shaped link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkProbe {
    pub new_connection_rtt_ms: f64,
    pub reused_connection_rtt_ms: f64,
    pub single_download_mbit_s: f64,
    /// The same download counted from its first byte: the bandwidth without the round trips.
    pub single_download_steady_mbit_s: f64,
    pub parallel_download_mbit_s: f64,
    pub probe_bytes: u64,
}

impl LinkProbe {
    pub fn line(&self) -> String {
        format!(
            "slow link probe: GET /v2/ takes {:.0} ms on a new connection, {:.0} ms on a reused one; \
             a {} blob downloads at {:.0} Mbit/s alone ({:.0} Mbit/s from its first byte), \
             {:.0} Mbit/s in total with four at once",
            self.new_connection_rtt_ms,
            self.reused_connection_rtt_ms,
            mb(self.probe_bytes),
            self.single_download_mbit_s,
            self.single_download_steady_mbit_s,
            self.parallel_download_mbit_s,
        )
    }
}

/// Everything one harness run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    /// `/proc/loadavg` when the run started and when it ended: other work on the machine
    /// skews timings, so the table says how busy it was.
    pub load_at_start: String,
    pub load_at_end: String,
    pub versions: Vec<String>,
    #[serde(skip)]
    pub shape: LinkShape,
    pub slow_link: String,
    pub probe: Option<LinkProbe>,
    pub datasets: BTreeMap<Kind, Dataset>,
    pub samples: Vec<Sample>,
    pub rss: Vec<RssSample>,
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn rss(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "not sampled".to_owned())
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{s:.3} s")
    } else {
        format!("{s:.2} s")
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**MISSED**" }
}

impl Report {
    pub fn new(shape: LinkShape, versions: Vec<String>) -> Report {
        Report {
            date: utc_now(),
            machine: machine(),
            load_at_start: load_average(),
            load_at_end: String::new(),
            versions,
            shape,
            slow_link: format!(
                "{} ms each way, {} Mbit/s per direction",
                shape.one_way_delay.as_millis(),
                shape.bytes_per_sec * 8 / 1_000_000
            ),
            probe: None,
            datasets: BTreeMap::new(),
            samples: Vec::new(),
            rss: Vec::new(),
        }
    }

    fn samples(
        &self,
        dataset: Kind,
        link: LinkKind,
        scenario: Scenario,
        tool: Tool,
    ) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| {
            s.dataset == dataset && s.link == link && s.scenario == scenario && s.tool == tool
        })
    }

    fn median_secs(&self, d: Kind, l: LinkKind, s: Scenario, t: Tool) -> Option<f64> {
        let values: Vec<f64> = self.samples(d, l, s, t).map(|s| s.seconds).collect();
        (!values.is_empty()).then(|| median(&values))
    }

    fn median_of(
        &self,
        d: Kind,
        l: LinkKind,
        s: Scenario,
        t: Tool,
        f: impl Fn(&Sample) -> Option<u64>,
    ) -> Option<u64> {
        let values: Vec<f64> = self
            .samples(d, l, s, t)
            .filter_map(|s| f(s).map(|v| v as f64))
            .collect();
        (!values.is_empty()).then(|| median(&values) as u64)
    }

    /// The least time the slow link allows for a scenario: its bytes over the bandwidth.
    fn floor(&self, d: Kind, s: Scenario) -> Option<f64> {
        let dataset = self.datasets.get(&d)?;
        let bytes = match s {
            Scenario::Cold => dataset.cold_bytes,
            Scenario::Noop => 0,
            Scenario::Incremental => dataset.incremental_bytes,
        };
        Some(self.shape.floor(bytes).as_secs_f64())
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let reps = self.samples.iter().map(|s| s.rep + 1).max().unwrap_or(0);
        let _ = writeln!(out, "### Run of {}\n", self.date);
        let _ = writeln!(out, "- Machine: {}", self.machine);
        let _ = writeln!(out, "- Versions: {}", self.versions.join("; "));
        let _ = writeln!(
            out,
            "- Load average (1/5/15 min): {} at the start, {} at the end",
            self.load_at_start, self.load_at_end
        );
        let _ = writeln!(
            out,
            "- Repetitions: {reps} per tool and scenario, medians shown; tools alternate which goes first"
        );
        let _ = writeln!(out, "- Slow link: {}", self.slow_link);
        if let Some(probe) = &self.probe {
            let _ = writeln!(
                out,
                "- Link check: {}",
                probe.line().trim_start_matches("slow link probe: ")
            );
        }
        for (kind, d) in &self.datasets {
            let _ = writeln!(
                out,
                "- Dataset {}: {} tags, {} to move cold{}",
                kind.short_name(),
                d.tags.len(),
                mb(d.cold_bytes),
                if d.incremental_bytes > 0 {
                    format!(", {} for the incremental tag", mb(d.incremental_bytes))
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| dataset | link | scenario | regmirror | skopeo | skopeo ÷ regmirror | link floor | regmirror ÷ floor | source requests (regmirror / skopeo) | bytes over link (regmirror / skopeo) | same digests |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        let mut keys: Vec<(Kind, LinkKind, Scenario)> = self
            .samples
            .iter()
            .map(|s| (s.dataset, s.link, s.scenario))
            .collect();
        keys.sort();
        keys.dedup();
        for (d, l, s) in keys {
            let r = self.median_secs(d, l, s, Tool::Regmirror);
            let k = self.median_secs(d, l, s, Tool::Skopeo);
            let floor = (l == LinkKind::Slow).then(|| self.floor(d, s)).flatten();
            let requests = |t| self.median_of(d, l, s, t, |x| Some(x.source_requests.total()));
            let bytes = |t| self.median_of(d, l, s, t, |x| x.link_down_bytes);
            let same = self
                .samples
                .iter()
                .filter(|x| x.dataset == d && x.link == l && x.scenario == s)
                .all(|x| x.digests_match);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |",
                d.short_name(),
                link_name(l),
                s.name(),
                r.map(secs).unwrap_or_default(),
                k.map(secs).unwrap_or_default(),
                r.zip(k)
                    .map(|(r, k)| format!("{:.1}×", k / r))
                    .unwrap_or_default(),
                // A scenario that moves no bytes is bound by round trips, not bandwidth.
                floor
                    .filter(|f| *f > 0.0)
                    .map(secs)
                    .unwrap_or_else(|| "–".to_owned()),
                match (r, floor) {
                    (Some(r), Some(f)) if f > 0.0 => format!("{:.2}×", r / f),
                    _ => "–".to_owned(),
                },
                requests(Tool::Regmirror)
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                requests(Tool::Skopeo)
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                match (bytes(Tool::Regmirror), bytes(Tool::Skopeo)) {
                    (Some(a), Some(b)) => format!("{} / {}", mb(a), mb(b)),
                    _ => "–".to_owned(),
                },
                if same { "yes" } else { "**NO**" },
            );
        }
        if !self.rss.is_empty() {
            let _ = writeln!(
                out,
                "\n| 1 GiB layer, loopback, cold | time | peak RSS (VmHWM) | same digests |"
            );
            let _ = writeln!(out, "|---|---:|---:|---|");
            for s in &self.rss {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    s.tool.name(),
                    secs(s.seconds),
                    rss(s.peak_rss_kib),
                    if s.digests_match { "yes" } else { "**NO**" }
                );
            }
        }
        let targets = self.targets();
        if !targets.is_empty() {
            let _ = writeln!(out, "\nTargets (from issue 7):\n");
            for t in targets {
                let _ = writeln!(out, "- {t}");
            }
        }
        out
    }

    /// The targets that this run has numbers for, each with its verdict.
    fn targets(&self) -> Vec<String> {
        use Kind::*;
        use LinkKind::*;
        use Scenario::*;
        let mut lines = Vec::new();
        let both = |d, l, s| {
            self.median_secs(d, l, s, Tool::Regmirror)
                .zip(self.median_secs(d, l, s, Tool::Skopeo))
        };
        if let (Some((r, k)), Some(floor)) =
            (both(Standard, Slow, Cold), self.floor(Standard, Cold))
        {
            lines.push(format!(
                "Slow link, standard, cold, within 1.3× of the floor ({}): {} = {:.2}× — {}",
                secs(floor),
                secs(r),
                r / floor,
                met(r <= 1.3 * floor)
            ));
            lines.push(format!(
                "Slow link, standard, cold, at least 3× faster than skopeo: {:.1}× — {}",
                k / r,
                met(k / r >= 3.0)
            ));
        }
        if let Some((r, k)) = both(Standard, Slow, Noop) {
            lines.push(format!(
                "Slow link, standard, no-op, under 0.5 s: {} — {}",
                secs(r),
                met(r < 0.5)
            ));
            lines.push(format!(
                "Slow link, standard, no-op, at least 15× faster than skopeo: {:.1}× — {}",
                k / r,
                met(k / r >= 15.0)
            ));
        }
        for d in [Standard, ManySmall] {
            if let Some((r, k)) = both(d, Loopback, Cold) {
                lines.push(format!(
                    "Loopback, {}, cold, no slower than skopeo: {} vs {} — {}",
                    d.short_name(),
                    secs(r),
                    secs(k),
                    met(r <= k)
                ));
            }
        }
        for s in [Cold, Noop] {
            if let Some((r, k)) = both(ManySmall, Slow, s) {
                lines.push(format!(
                    "Many small tags, slow link, {}, at least 10× faster than skopeo: {:.1}× — {}",
                    s.name(),
                    k / r,
                    met(k / r >= 10.0)
                ));
            }
        }
        if let Some(s) = self.rss.iter().find(|s| s.tool == Tool::Regmirror) {
            let ok = s.peak_rss_kib.is_some_and(|k| k < 64 * 1024);
            lines.push(format!(
                "Peak RSS under 64 MiB for the 1 GiB layer: {} — {}",
                rss(s.peak_rss_kib),
                met(ok)
            ));
        }
        lines
    }
}

/// `2026-11-27 09:12 UTC`.
fn utc_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{} {:02}:{:02} UTC", now.date(), now.hour(), now.minute())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU model, core count and memory, from `/proc`.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{model}, {cores} cores, {mem_gib:.0} GiB RAM, Linux")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
