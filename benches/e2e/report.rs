//! Samples, medians, the targets, and the Markdown table they end up in.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::dataset::{Dataset, Kind};
use crate::proxy::{LinkShape, Traffic};
use crate::registry::Requests;
use crate::tls::TlsMode;
use crate::tools::Tool;
use crate::{LinkKind, Scenario, link_name};

/// What one tool run did to one registry.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// From the registry's log: requests by kind, busy time, most in flight.
    pub requests: Requests,
    /// From the proxy in front of it: TCP connections opened.
    pub connections: u64,
    /// TLS handshakes on them, full and resumed.
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
    /// Bytes the tool sent to the registry and the registry sent back.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// The registry process's CPU time (user + system) during the run: on a machine of few
    /// cores, what its requests cost it can bound the run more than the link does.
    pub registry_cpu_secs: f64,
}

impl Side {
    pub fn new(traffic: Traffic, requests: Requests, registry_cpu_secs: f64) -> Side {
        Side {
            registry_cpu_secs,
            requests,
            connections: traffic.connections,
            full_handshakes: traffic.full_handshakes,
            resumed_handshakes: traffic.resumed_handshakes,
            bytes_up: traffic.up_bytes,
            bytes_down: traffic.down_bytes,
        }
    }

    /// `12 req, 3 conn (2 full + 1 resumed TLS), ≤ 8 in flight, busy 0.120 s, registry CPU 0.050 s`.
    fn summary(&self) -> String {
        let mut out = format!("{} req, {} conn", self.requests.total(), self.connections);
        if self.full_handshakes + self.resumed_handshakes > 0 {
            let _ = write!(
                out,
                " ({} full + {} resumed TLS)",
                self.full_handshakes, self.resumed_handshakes
            );
        }
        let _ = write!(
            out,
            ", ≤ {} in flight, busy {}, registry CPU {}",
            self.requests.max_in_flight,
            secs(self.requests.busy_secs),
            secs(self.registry_cpu_secs)
        );
        out
    }
}

/// One tool's run of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub tls: TlsMode,
    pub dataset: Kind,
    pub link: LinkKind,
    pub scenario: Scenario,
    pub tool: Tool,
    pub rep: usize,
    pub seconds: f64,
    /// User + system CPU time of the tool's process.
    pub cpu_secs: f64,
    /// The harness's own CPU time during the run: the proxies on both sides.
    pub proxy_cpu_secs: f64,
    pub peak_rss_kib: u64,
    pub source: Side,
    pub dest: Side,
    /// The destination served exactly the source's tag → digest map afterwards.
    pub digests_match: bool,
}

impl Sample {
    /// `0.12 + 0.30 + 0.25 + 0.08 = 0.75 s (75 % of 2 cores)`: the tool's CPU, the source
    /// registry's, the destination registry's, the proxies', their sum, and how much of the
    /// machine that is over the run's wall time.
    fn cpu_split(&self) -> String {
        let total = self.cpu_secs
            + self.source.registry_cpu_secs
            + self.dest.registry_cpu_secs
            + self.proxy_cpu_secs;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!(
            "{:.2} + {:.2} + {:.2} + {:.2} = {} ({:.0} % of {cores} cores)",
            self.cpu_secs,
            self.source.registry_cpu_secs,
            self.dest.registry_cpu_secs,
            self.proxy_cpu_secs,
            secs(total),
            100.0 * total / (self.seconds * cores as f64),
        )
    }

    /// A progress line for the terminal.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<6} {:<10} {:<8} {:<11} rep {} {:<9} {:>8.3} s, cpu {:.2} s, proxies' cpu {:.2} s, rss {}; source: {}, {}; dest: {}",
            self.tls.name(),
            self.dataset.short_name(),
            link_name(self.link),
            self.scenario.name(),
            self.rep + 1,
            self.tool.name(),
            self.seconds,
            self.cpu_secs,
            self.proxy_cpu_secs,
            rss(self.peak_rss_kib),
            self.source.summary(),
            mb(self.source.bytes_down),
            self.dest.summary(),
        );
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
    pub tls: TlsMode,
    pub seconds: f64,
    pub cpu_secs: f64,
    pub peak_rss_kib: u64,
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

fn rss(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{s:.3} s")
    } else {
        format!("{s:.2} s")
    }
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

    fn samples(&self, key: Key, tool: Tool) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |s| s.key() == key && s.tool == tool)
    }

    fn median_secs(&self, key: Key, tool: Tool) -> Option<f64> {
        let values: Vec<f64> = self.samples(key, tool).map(|s| s.seconds).collect();
        (!values.is_empty()).then(|| median(&values))
    }

    fn median_by(&self, key: Key, tool: Tool, f: impl Fn(&Sample) -> f64) -> Option<f64> {
        let values: Vec<f64> = self.samples(key, tool).map(f).collect();
        (!values.is_empty()).then(|| median(&values))
    }

    /// The run whose time is nearest the median: its counts stand for the cell's.
    fn typical(&self, key: Key, tool: Tool) -> Option<&Sample> {
        let median = self.median_secs(key, tool)?;
        self.samples(key, tool).min_by(|a, b| {
            (a.seconds - median)
                .abs()
                .total_cmp(&(b.seconds - median).abs())
        })
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

    fn keys(&self) -> Vec<Key> {
        let mut keys: Vec<Key> = self.samples.iter().map(Sample::key).collect();
        keys.sort();
        keys.dedup();
        keys
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
        self.times_table(&mut out);
        self.breakdown_table(&mut out);
        if !self.rss.is_empty() {
            let _ = writeln!(
                out,
                "\n| 1 GiB layer, loopback, cold | transport | time | CPU | peak RSS | same digests |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|---|");
            for s in &self.rss {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    s.tool.name(),
                    s.tls.name(),
                    secs(s.seconds),
                    secs(s.cpu_secs),
                    rss(s.peak_rss_kib),
                    if s.digests_match { "yes" } else { "**NO**" }
                );
            }
        }
        let targets = self.targets();
        if !targets.is_empty() {
            let _ = writeln!(out, "\nTargets (issue 17; TLS with HTTP/2 off):\n");
            for t in targets {
                let _ = writeln!(out, "- {t}");
            }
        }
        out
    }

    /// Medians per cell: both tools' times, the ratio, the floor, regmirror's CPU and memory.
    fn times_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n| transport | dataset | link | scenario | regmirror | skopeo | skopeo ÷ regmirror | link floor | regmirror ÷ floor | CPU (regmirror / skopeo) | peak RSS (regmirror / skopeo) | source bytes | same digests |"
        );
        let _ = writeln!(
            out,
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for key in self.keys() {
            let (tls, d, l, s) = key;
            let r = self.median_secs(key, Tool::Regmirror);
            let k = self.median_secs(key, Tool::Skopeo);
            let floor = (l == LinkKind::Slow).then(|| self.floor(d, s)).flatten();
            let pair = |f: &dyn Fn(&Sample) -> f64, show: &dyn Fn(f64) -> String| {
                let r = self.median_by(key, Tool::Regmirror, f);
                let k = self.median_by(key, Tool::Skopeo, f);
                format!(
                    "{} / {}",
                    r.map(show).unwrap_or_else(|| "–".to_owned()),
                    k.map(show).unwrap_or_else(|| "–".to_owned())
                )
            };
            let same = self
                .samples
                .iter()
                .filter(|x| x.key() == key)
                .all(|x| x.digests_match);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                tls.name(),
                d.short_name(),
                link_name(l),
                s.name(),
                r.map(secs).unwrap_or_else(|| "–".to_owned()),
                k.map(secs).unwrap_or_else(|| "–".to_owned()),
                r.zip(k)
                    .map(|(r, k)| format!("{:.1}×", k / r))
                    .unwrap_or_else(|| "–".to_owned()),
                // A scenario that moves no bytes is bound by round trips, not bandwidth.
                floor
                    .filter(|f| *f > 0.0)
                    .map(secs)
                    .unwrap_or_else(|| "–".to_owned()),
                match (r, floor) {
                    (Some(r), Some(f)) if f > 0.0 => format!("{:.2}×", r / f),
                    _ => "–".to_owned(),
                },
                pair(&|x| x.cpu_secs, &secs),
                pair(&|x| x.peak_rss_kib as f64, &|k| rss(k as u64)),
                pair(&|x| x.source.bytes_down as f64, &|b| mb(b as u64)),
                if same { "yes" } else { "**NO**" },
            );
        }
    }

    /// Where the time goes: per cell and tool, the typical run's requests by kind, connections,
    /// TLS handshakes, most requests in flight and busy time, on each side.
    fn breakdown_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nWhere the time goes (the run nearest the median; requests from the registries' logs, \
             connections and TLS handshakes from the proxies; busy = time with at least one request \
             of the tool in the registry; CPU = the tool's, the registries', the proxies' and their \
             sum, against the wall time times the machine's cores):\n"
        );
        let _ = writeln!(
            out,
            "| transport | dataset | link | scenario | tool | time | CPU: tool + source registry + destination registry + proxies | source requests | source | destination requests | destination |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---:|---:|---|---|---|---|");
        for key in self.keys() {
            for tool in [Tool::Regmirror, Tool::Skopeo] {
                let Some(x) = self.typical(key, tool) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    x.tls.name(),
                    x.dataset.short_name(),
                    link_name(x.link),
                    x.scenario.name(),
                    tool.name(),
                    secs(x.seconds),
                    x.cpu_split(),
                    kinds(&x.source.requests),
                    x.source.summary(),
                    kinds(&x.dest.requests),
                    x.dest.summary(),
                );
            }
        }
    }

    /// The targets that this run has numbers for (TLS, HTTP/2 off), with verdicts.
    fn targets(&self) -> Vec<String> {
        use Kind::*;
        use LinkKind::*;
        use Scenario::*;
        let mut lines = Vec::new();
        let limits: [(Kind, LinkKind, Scenario, f64); 9] = [
            (ManySmall, Slow, Cold, 6.0),
            (ManySmall, Slow, Noop, 0.5),
            (ManySmall, Loopback, Cold, 4.5),
            (ManySmall, Loopback, Noop, 0.28),
            (ManySmall, Loopback, Incremental, 0.35),
            (Standard, Slow, Noop, 0.3),
            (Standard, Slow, Incremental, 0.6),
            (Standard, Loopback, Noop, 0.075),
            (Standard, Loopback, Incremental, 0.15),
        ];
        for (d, l, s, limit) in limits {
            if let Some(r) = self.median_secs((TlsMode::H1, d, l, s), Tool::Regmirror) {
                lines.push(format!(
                    "{}, {}, {}: ≤ {}: {} — {}",
                    d.short_name(),
                    link_name(l),
                    s.name(),
                    secs(limit),
                    secs(r),
                    verdict(r, limit)
                ));
            }
        }
        if let (Some(r), Some(floor)) = (
            self.median_secs((TlsMode::H1, Standard, Slow, Cold), Tool::Regmirror),
            self.floor(Standard, Cold),
        ) {
            lines.push(format!(
                "standard, slow, cold: ≤ 1.2× the floor ({}): {} = {:.2}× — {}",
                secs(floor),
                secs(r),
                r / floor,
                verdict(r, 1.2 * floor)
            ));
        }
        if let Some(r) = self.median_secs((TlsMode::H1, Scale, Slow, Noop), Tool::Regmirror) {
            lines.push(format!(
                "scale (10 000 tags), slow, no-op: ≤ 3 s: {} — {}",
                secs(r),
                verdict(r, 3.0)
            ));
        }
        let regmirror_rss = self
            .samples
            .iter()
            .filter(|s| s.tool == Tool::Regmirror)
            .map(|s| s.peak_rss_kib)
            .chain(
                self.rss
                    .iter()
                    .filter(|s| s.tool == Tool::Regmirror)
                    .map(|s| s.peak_rss_kib),
            )
            .max();
        if let Some(kib) = regmirror_rss {
            lines.push(format!(
                "peak RSS ≤ 64 MiB in every run: at most {} — {}",
                rss(kib),
                verdict(kib as f64, 64.0 * 1024.0)
            ));
        }
        let lost = self.samples.iter().filter(|s| !s.digests_match).count();
        lines.push(format!(
            "never a lost tag: {} of {} runs left a destination differing from the source — {}",
            lost,
            self.samples.len(),
            if lost == 0 { "met" } else { "**MISSED**" }
        ));
        lines
    }
}

/// A cell of the tables: transport, dataset, link, scenario.
type Key = (TlsMode, Kind, LinkKind, Scenario);

impl Sample {
    fn key(&self) -> Key {
        (self.tls, self.dataset, self.link, self.scenario)
    }
}

/// `met`, or by how much it was missed.
fn verdict(measured: f64, limit: f64) -> String {
    if measured <= limit {
        "met".to_owned()
    } else {
        format!("**missed** by {:.0} %", (measured / limit - 1.0) * 100.0)
    }
}

/// `GET tags 1, HEAD manifest 300, …` (no requests: `–`).
fn kinds(requests: &Requests) -> String {
    if requests.counts.is_empty() {
        return "–".to_owned();
    }
    requests
        .counts
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
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

    #[test]
    fn a_verdict_says_by_how_much_a_target_was_missed() {
        assert_eq!(verdict(0.3, 0.3), "met");
        assert_eq!(verdict(0.45, 0.3), "**missed** by 50 %");
    }
}
