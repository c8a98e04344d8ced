//! The end-to-end comparison: `regmirror sync` against `skopeo sync --all`, in the same run, on
//! real registries on loopback (plain HTTP, or TLS with HTTP/2 off or on), directly and through
//! a shaped slow link.
//!
//! For each transport, dataset and link, every repetition starts two empty destination
//! registries (one per tool) and runs, alternating which tool goes first: cold (empty
//! destination), no-op (nothing changed), and incremental (one new tag on the source). After
//! cold and incremental, both destinations must serve exactly the source's tag → digest map.
//! Every registry sits behind a proxy of the harness (the slow link, or a pass-through one on
//! loopback) that counts connections and TLS handshakes; the registries' own logs give the
//! requests by kind, how long they were busy and how many requests were in flight. Then the
//! peak memory of mirroring one 1 GiB layer. Results: Markdown tables (medians, ratios, the
//! link's floor, where the time goes) on stdout and in `--work-dir`, every sample as JSON.
//!
//! Run: `benches/e2e.sh` (builds both in release, then runs this with its arguments).

mod client;
mod dataset;
mod proxy;
mod registry;
mod report;
mod tls;
mod tools;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;

use crate::client::RegistryClient;
use crate::dataset::{Dataset, Kind, ProbeBlob};
use crate::proxy::{LinkShape, ShapingProxy};
use crate::registry::Registry;
use crate::report::{LinkProbe, Report, RssSample, Sample, Side};
use crate::tls::{Certs, TlsMode};
use crate::tools::{Tool, Tools};

#[derive(Parser, Debug)]
#[command(about = "Time regmirror sync against skopeo sync --all on real loopback registries")]
struct Args {
    /// Datasets to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_values = ["standard", "many-small"])]
    dataset: Vec<Kind>,
    /// Links to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_values = ["loopback", "slow"])]
    link: Vec<LinkKind>,
    /// The registries' transport (comma-separated): `off` (plain HTTP), `h1` (TLS, HTTP/2
    /// disabled on the registries), `h2` (TLS, HTTP/2 offered).
    #[arg(long, value_delimiter = ',', default_values = ["h1"])]
    tls: Vec<TlsMode>,
    /// Tools to run (comma-separated); both unless you are looking at one of them alone.
    #[arg(long, value_delimiter = ',', default_values = ["regmirror", "skopeo"])]
    tool: Vec<Tool>,
    /// Run skopeo on the scale datasets too (about an hour per run over the slow link).
    #[arg(long)]
    skopeo_scale: bool,
    /// Repetitions of each scenario per tool.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Also measure peak RSS mirroring a 1 GiB layer (`--rss false` to skip).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    rss: bool,
    /// Keeps the seeded source registry between invocations, the logs, and the results.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The regmirror binary (a release build).
    #[arg(long)]
    regmirror: Option<PathBuf>,
    #[arg(long, default_value = "skopeo")]
    skopeo: PathBuf,
    /// Names the results files: `WORK_DIR/NAME.md` and `WORK_DIR/NAME.json`.
    #[arg(long, default_value = "results")]
    results: String,
}

/// How the tools reach the source registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// Directly, on 127.0.0.1.
    Loopback,
    /// Through the shaping proxy: 25 ms each way, 400 Mbit/s per direction.
    Slow,
}

/// One measured step of a repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Cold,
    Noop,
    Incremental,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cold => "cold",
            Scenario::Noop => "no-op",
            Scenario::Incremental => "incremental",
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is inside the workspace")
        .to_path_buf();
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| workspace.join("target/e2e"));
    // By default the regmirror built next to this harness (same profile and target directory).
    let regmirror = match args.regmirror.clone() {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the harness binary has a directory")?
            .join("regmirror"),
    };
    if !regmirror.is_file() {
        bail!(
            "no regmirror binary at {}: build it with `cargo build --release -p regmirror-cli` \
             (or pass --regmirror PATH)",
            regmirror.display()
        );
    }
    let versions = vec![
        version_of(&regmirror, "cargo build --release -p regmirror-cli").await?,
        version_of(&args.skopeo, "sudo apt-get install -y skopeo").await?,
        version_of(
            Path::new("docker-registry"),
            "sudo apt-get install -y docker-registry",
        )
        .await?,
    ];
    let scratch = work_dir.join("scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    let logs = work_dir.join("logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let tools = Tools {
        regmirror,
        skopeo: args.skopeo.clone(),
        skopeo_data: scratch.join("skopeo-data"),
        logs,
    };

    let certs = Certs::generate(&scratch.join("certs"))?;
    let mut report = Report::new(LinkShape::SLOW, versions);
    let mut rss_done = !args.rss;
    for &tls in &args.tls {
        // The seeded storage is the same for every transport; only the way in changes.
        let source = Registry::start(&work_dir.join("source"), tls, Some(&certs)).await?;
        let source_client = source.client()?;
        let mut bench = Bench {
            tools: &tools,
            tls,
            certs: &certs,
            source: &source,
            source_client: &source_client,
            scratch: &scratch,
            report: &mut report,
            tools_to_run: args.tool.clone(),
            skopeo_scale: args.skopeo_scale,
            runs: 0,
        };
        for &kind in &args.dataset {
            if kind == Kind::Big {
                bail!("`big` is the memory measurement's dataset; it runs with --rss");
            }
            let dataset = Dataset::ensure(kind, &source_client, &work_dir.join("source")).await?;
            bench.report.datasets.insert(kind, dataset.clone());
            for &link in &args.link {
                let shape = match link {
                    LinkKind::Loopback => LinkShape::DIRECT,
                    LinkKind::Slow => LinkShape::SLOW,
                };
                let proxy = ShapingProxy::start(source.addr(), shape).await?;
                if link == LinkKind::Slow && bench.report.probe.is_none() {
                    bench.report.probe =
                        Some(probe_link(&source_client, &proxy, &certs, tls).await?);
                }
                for rep in 0..args.reps {
                    bench.repetition(kind, &dataset, link, &proxy, rep).await?;
                }
            }
        }
        if !rss_done {
            let dataset =
                Dataset::ensure(Kind::Big, &source_client, &work_dir.join("source")).await?;
            bench.report.datasets.insert(Kind::Big, dataset.clone());
            bench.rss(&dataset).await?;
            rss_done = true;
        }
        source.stop().await;
    }
    report.load_at_end = report::load_average();

    let markdown = report.markdown();
    println!("{markdown}");
    let results = work_dir.join(&args.results);
    std::fs::write(results.with_extension("md"), &markdown)?;
    std::fs::write(
        results.with_extension("json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    eprintln!(
        "results in {0}.md and {0}.json, tool output in {1}/logs",
        results.display(),
        work_dir.display()
    );
    Ok(())
}

/// The first line of `program --version`; an error saying how to install it if it fails.
async fn version_of(program: &Path, install: &str) -> Result<String> {
    let output = tokio::process::Command::new(program)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("running {} --version: {install}", program.display()))?;
    if !output.status.success() {
        bail!("{} --version failed: {install}", program.display());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Shared state of one harness run, for one transport.
struct Bench<'a> {
    tools: &'a Tools,
    tls: TlsMode,
    certs: &'a Certs,
    source: &'a Registry,
    source_client: &'a RegistryClient,
    scratch: &'a PathBuf,
    report: &'a mut Report,
    tools_to_run: Vec<Tool>,
    skopeo_scale: bool,
    /// Numbers the log files.
    runs: usize,
}

/// A destination registry, the counting proxy in front of it, and the tool that writes to it.
struct Destination {
    tool: Tool,
    registry: Registry,
    proxy: ShapingProxy,
}

impl Bench<'_> {
    /// Cold, no-op and incremental for both tools, each with a fresh destination.
    async fn repetition(
        &mut self,
        kind: Kind,
        dataset: &Dataset,
        link: LinkKind,
        proxy: &ShapingProxy,
        rep: usize,
    ) -> Result<()> {
        // Alternate who goes first, so neither always runs on a warmer machine.
        let mut order = vec![Tool::Regmirror, Tool::Skopeo];
        if rep % 2 == 1 {
            order.reverse();
        }
        order.retain(|t| self.tools_to_run.contains(t));
        if kind.is_scale() && !self.skopeo_scale {
            order.retain(|t| *t != Tool::Skopeo);
        }
        let mut destinations = Vec::new();
        for tool in order {
            let dir = self.scratch.join(format!("dest-{}", tool.name()));
            let _ = std::fs::remove_dir_all(&dir);
            let registry = Registry::start(&dir, self.tls, Some(self.certs)).await?;
            let proxy = ShapingProxy::start(registry.addr(), LinkShape::DIRECT).await?;
            destinations.push(Destination {
                tool,
                registry,
                proxy,
            });
        }
        let source_host = proxy.addr().to_string();
        for scenario in [Scenario::Cold, Scenario::Noop, Scenario::Incremental] {
            if scenario == Scenario::Incremental {
                dataset.add_new_tag(self.source_client).await?;
            }
            for destination in &destinations {
                let sample = self
                    .measure(
                        kind,
                        dataset,
                        link,
                        scenario,
                        rep,
                        destination,
                        &source_host,
                        proxy,
                    )
                    .await?;
                eprintln!("{}", sample.line());
                self.report.samples.push(sample);
            }
            if scenario == Scenario::Incremental {
                dataset.remove_new_tag(self.source_client).await?;
            }
        }
        for destination in destinations {
            destination.registry.stop().await;
        }
        Ok(())
    }

    /// Runs one tool once and checks its destination afterwards.
    #[allow(clippy::too_many_arguments)]
    async fn measure(
        &mut self,
        kind: Kind,
        dataset: &Dataset,
        link: LinkKind,
        scenario: Scenario,
        rep: usize,
        destination: &Destination,
        source_host: &str,
        proxy: &ShapingProxy,
    ) -> Result<Sample> {
        self.runs += 1;
        let log_name = format!(
            "{:03}-{}-{}-{}-{}-{}",
            self.runs,
            self.tls.name(),
            kind.short_name(),
            link_name(link),
            scenario.name(),
            destination.tool.name()
        );
        let source_before = proxy.traffic();
        let dest_before = destination.proxy.traffic();
        let source_log = self.source.log_position();
        let dest_log = destination.registry.log_position();
        let source_cpu = self.source.cpu()?;
        let dest_cpu = destination.registry.cpu()?;
        let proxy_cpu = tools::own_cpu();
        let ca_dir = self.tls.is_tls().then_some(self.certs.ca_dir.as_path());
        let run = self
            .tools
            .sync(
                destination.tool,
                source_host,
                &dataset.repo,
                &destination.proxy.addr().to_string(),
                ca_dir,
                &log_name,
            )
            .await?;
        let proxy_cpu = tools::own_cpu() - proxy_cpu;
        // The registries log a request just after answering it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let source = Side::new(
            proxy.traffic() - source_before,
            self.source.requests_since(source_log)?,
            (self.source.cpu()? - source_cpu).as_secs_f64(),
        );
        // Counted before the check below, whose own tag list and HEADs are not the tool's.
        let dest = Side::new(
            destination.proxy.traffic() - dest_before,
            destination.registry.requests_since(dest_log)?,
            (destination.registry.cpu()? - dest_cpu).as_secs_f64(),
        );
        let expected = match scenario {
            Scenario::Incremental => dataset.tags_with_new(),
            Scenario::Cold | Scenario::Noop => dataset.tags.clone(),
        };
        let found = destination
            .registry
            .client()?
            .tag_digests(&format!("mirror/{}", kind.short_name()))
            .await?;
        let digests_match = found == expected;
        if !digests_match {
            eprintln!(
                "DIGEST MISMATCH: {} {log_name}: expected {expected:?}, destination serves {found:?}",
                destination.tool.name()
            );
        }
        Ok(Sample {
            tls: self.tls,
            dataset: kind,
            link,
            scenario,
            tool: destination.tool,
            rep,
            seconds: run.elapsed.as_secs_f64(),
            cpu_secs: run.cpu.as_secs_f64(),
            proxy_cpu_secs: proxy_cpu.as_secs_f64(),
            peak_rss_kib: run.peak_rss_kib,
            source,
            dest,
            digests_match,
        })
    }

    /// Peak RSS of each tool mirroring the 1 GiB layer on loopback, fresh destination each.
    async fn rss(&mut self, dataset: &Dataset) -> Result<()> {
        for tool in self.tools_to_run.clone() {
            let dir = self.scratch.join(format!("dest-big-{}", tool.name()));
            let _ = std::fs::remove_dir_all(&dir);
            let registry = Registry::start(&dir, self.tls, Some(self.certs)).await?;
            let source_log = self.source.log_position();
            let run = self
                .tools
                .sync(
                    tool,
                    &self.source.host(),
                    &dataset.repo,
                    &registry.host(),
                    self.tls.is_tls().then_some(self.certs.ca_dir.as_path()),
                    &format!("rss-{}", tool.name()),
                )
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let found = registry
                .client()?
                .tag_digests(&format!("mirror/{}", Kind::Big.short_name()))
                .await?;
            let sample = RssSample {
                tool,
                tls: self.tls,
                seconds: run.elapsed.as_secs_f64(),
                cpu_secs: run.cpu.as_secs_f64(),
                peak_rss_kib: run.peak_rss_kib,
                source_requests: self.source.requests_since(source_log)?,
                digests_match: found == dataset.tags,
            };
            eprintln!("{}", sample.line());
            self.report.rss.push(sample);
            registry.stop().await;
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    }
}

pub fn link_name(link: LinkKind) -> &'static str {
    match link {
        LinkKind::Loopback => "loopback",
        LinkKind::Slow => "slow",
    }
}

/// Checks the proxy does what it claims: round trip on a new and a reused connection, and
/// throughput of one download and of four at once (which share the cap).
async fn probe_link(
    source: &RegistryClient,
    proxy: &ShapingProxy,
    certs: &Certs,
    tls: TlsMode,
) -> Result<LinkProbe> {
    let probe = ProbeBlob::ensure(source).await?;
    let certs = tls.is_tls().then_some(certs);
    let through = RegistryClient::new(&proxy.addr().to_string(), certs)?;
    let started = Instant::now();
    through.ping().await?;
    let new_connection_rtt = started.elapsed();
    let mut reused = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        through.ping().await?;
        reused.push(started.elapsed().as_secs_f64());
    }
    let reused_connection_rtt = Duration::from_secs_f64(report::median(&reused));

    let download = |client: RegistryClient| {
        let probe = probe.clone();
        async move {
            let mut response = client.get_blob(probe.repo, &probe.digest).await?;
            let first_byte = Instant::now();
            let mut bytes = 0u64;
            while let Some(chunk) = response.chunk().await? {
                bytes += chunk.len() as u64;
            }
            if bytes != probe.size {
                bail!("probe download got {bytes} bytes of {}", probe.size);
            }
            anyhow::Ok((bytes, first_byte.elapsed()))
        }
    };
    let started = Instant::now();
    let (single, after_first_byte) = download(through.clone()).await?;
    let single_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut parallel = Vec::new();
    for _ in 0..4 {
        // Separate clients: four connections, as a parallel mirror would open.
        parallel.push(tokio::spawn(download(RegistryClient::new(
            &proxy.addr().to_string(),
            certs,
        )?)));
    }
    let mut parallel_bytes = 0;
    for task in parallel {
        parallel_bytes += task.await??.0;
    }
    let parallel_secs = started.elapsed().as_secs_f64();
    let probe = LinkProbe {
        new_connection_rtt_ms: new_connection_rtt.as_secs_f64() * 1e3,
        reused_connection_rtt_ms: reused_connection_rtt.as_secs_f64() * 1e3,
        single_download_mbit_s: single as f64 * 8.0 / single_secs / 1e6,
        single_download_steady_mbit_s: single as f64 * 8.0 / after_first_byte.as_secs_f64() / 1e6,
        parallel_download_mbit_s: parallel_bytes as f64 * 8.0 / parallel_secs / 1e6,
        probe_bytes: single,
    };
    eprintln!("{}", probe.line());
    Ok(probe)
}
