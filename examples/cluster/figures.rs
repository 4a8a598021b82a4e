//! Failover figures: for each backend's lease, `RUNS` runs of each departure of the leader
//! (killed, stopped, paused past its lease) with a 5 s lease, three `cluster-node` processes
//! each; prints the median and the largest time from the departure to the first fenced write
//! of the new leader, and how often a paused leader's write was refused by its token.
//!
//! ```text
//! cargo build -p catga-examples-cluster --release
//! target/release/failover-figures [runs] [nats|redis|postgres …]
//! target/release/failover-figures renew     # what a renewal costs, against a raw round trip
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use catga_examples_cluster::scenario::{Departure, Place, run};
use catga_examples_cluster::{Backend, median_and_max};

#[path = "renew.rs"]
mod renew;

const TTL: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "renew") {
        return match renew::figures().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "renew: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut backends: Vec<Backend> = args.filter_map(|a| Backend::parse(&a)).collect();
    if backends.is_empty() {
        backends = Backend::ALL.to_vec();
    }
    let Some(node) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("cluster-node")))
    else {
        let _ = writeln!(
            std::io::stderr(),
            "cannot find cluster-node next to this program"
        );
        return ExitCode::FAILURE;
    };
    let mut out = std::io::stdout();
    for backend in backends {
        for departure in [Departure::Killed, Departure::Stopped, Departure::Paused] {
            let mut takeovers = Vec::new();
            let mut refused = 0;
            for _ in 0..runs {
                let place = match Place::new(backend).await {
                    Ok(place) => place,
                    Err(e) => {
                        let _ = writeln!(std::io::stderr(), "{}: {e}", backend.name());
                        return ExitCode::FAILURE;
                    }
                };
                let node = node.clone();
                let ran = tokio::task::block_in_place(|| {
                    run(&node, &place, TTL, departure).map(|(outcome, _nodes)| outcome)
                });
                place.clean().await;
                match ran {
                    Ok(outcome) => {
                        takeovers.push(outcome.takeover);
                        refused += usize::from(outcome.stale_write_refused);
                    }
                    Err(e) => {
                        let _ =
                            writeln!(std::io::stderr(), "{} {departure:?}: {e}", backend.name());
                        return ExitCode::FAILURE;
                    }
                }
            }
            let (median, max) = median_and_max(&mut takeovers);
            let _ = write!(
                out,
                "{:<8} {:<8} lease 5 s, {runs} runs: takeover median {:>6} ms, max {:>6} ms",
                backend.name(),
                format!("{departure:?}").to_lowercase(),
                median.as_millis(),
                max.as_millis()
            );
            if departure == Departure::Paused {
                let _ = write!(
                    out,
                    "; the old leader's write refused by its token in {refused} of {runs}, stepped down in all"
                );
            }
            let _ = writeln!(out);
        }
    }
    if let Err(e) = lateness(&node, &mut out).await {
        let _ = writeln!(std::io::stderr(), "lateness: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// 400 ticks due every 10 ms, three nodes (PostgreSQL lease and schedule store): from each
/// tick's due time to its effect, p50 / p99 / max.
async fn lateness(
    node: &std::path::Path,
    out: &mut impl Write,
) -> Result<(), catga_examples_cluster::scenario::ScenarioError> {
    use catga_examples_cluster::Cluster;
    let place = Place::new(Backend::Postgres).await?;
    let cluster = Cluster::start(node, &place.env(TTL), 3)
        .map_err(|e| catga_examples_cluster::scenario::ScenarioError::Setup(e.to_string()))?;
    let started = std::time::Instant::now();
    let _ = cluster.leader(started, Duration::from_secs(60));
    place.schedule_ticks(400, Duration::from_millis(10)).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while place.ticks().await? < 400 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut late: Vec<u64> = cluster
        .lines()
        .iter()
        .filter(|s| s.line.event == "handled")
        .filter_map(|s| s.line.late_ms)
        .collect();
    late.sort_unstable();
    let at = |q: f64| {
        late.get(((late.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let _ = writeln!(
        out,
        "scheduled-message lateness, 400 ticks every 10 ms, 3 nodes: p50 {} ms, p99 {} ms, max {} ms ({} applied)",
        at(0.5),
        at(0.99),
        late.last().copied().unwrap_or(0),
        late.len()
    );
    drop(cluster);
    place.clean().await;
    Ok(())
}
