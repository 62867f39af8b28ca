//! runplane and Pushgateway side by side: scrapes of as many workflows as
//! groups, with and without gzip, each next to a static floor of its own
//! response's bytes, measured in alternating batches of one run.

use std::fmt::Write as _;

use crate::pushgateway::Pushgateway;
use crate::scrape::{self, Encoding};
use crate::stats::Repeated;

/// One size, measured both ways.
pub(crate) struct SideBySide {
    pub(crate) workflows: usize,
    /// runplane, Pushgateway, the floor of runplane's bytes: plain, then gzip.
    plain: [Repeated; 3],
    gzip: [Repeated; 3],
    /// Bytes of each response: runplane's and Pushgateway's, plain and gzip.
    bytes: [[usize; 2]; 2],
    /// Series of each exposition: runplane's, Pushgateway's.
    series: [usize; 2],
}

/// Scrapes `url` (an organization of `workflows` workflows) and a
/// Pushgateway holding as many groups, `repetitions` batches of `count`.
pub(crate) async fn scrapes(
    http: &reqwest::Client,
    (url, secret): (&str, &str),
    pushgateway: &Pushgateway,
    workflows: usize,
    count: usize,
    repetitions: usize,
) -> anyhow::Result<SideBySide> {
    pushgateway.wipe(http).await?;
    pushgateway.fill(workflows).await?;
    let peer = pushgateway.metrics_url();
    let ours = [
        scrape::fetch(http, url, Some(secret), Encoding::Identity).await?,
        scrape::fetch(http, url, Some(secret), Encoding::Gzip).await?,
    ];
    let theirs = [
        scrape::fetch(http, &peer, None, Encoding::Identity).await?,
        scrape::fetch(http, &peer, None, Encoding::Gzip).await?,
    ];
    // Both gzip bodies must be whole and say what the plain ones say.
    let series = [
        scrape::series(std::str::from_utf8(&ours[0])?),
        scrape::series(std::str::from_utf8(&theirs[0])?),
    ];
    anyhow::ensure!(
        scrape::series(&scrape::gunzip(&ours[1])?) == series[0],
        "runplane's gzip scrape differs from its plain one"
    );
    anyhow::ensure!(
        scrape::series(&scrape::gunzip(&theirs[1])?) >= workflows * 3,
        "Pushgateway's gzip scrape lacks groups"
    );
    let floors = [
        format!(
            "http://{}/metrics",
            scrape::serve_from_memory(ours[0].clone(), Encoding::Identity).await?
        ),
        format!(
            "http://{}/metrics",
            scrape::serve_from_memory(ours[1].clone(), Encoding::Gzip).await?
        ),
    ];
    let mut plain: [Repeated; 3] = Default::default();
    let mut gzip: [Repeated; 3] = Default::default();
    for _ in 0..repetitions {
        for (encoding, results, floor) in [
            (Encoding::Identity, &mut plain, &floors[0]),
            (Encoding::Gzip, &mut gzip, &floors[1]),
        ] {
            results[0].push(scrape::batch(http, url, Some(secret), encoding, count).await?);
            results[1].push(scrape::batch(http, &peer, None, encoding, count).await?);
            results[2].push(scrape::batch(http, floor, None, encoding, count).await?);
        }
    }
    Ok(SideBySide {
        workflows,
        plain,
        gzip,
        bytes: [
            [ours[0].len(), ours[1].len()],
            [theirs[0].len(), theirs[1].len()],
        ],
        series,
    })
}

/// The report's tables for `sizes`, and the ingestion next to Pushgateway's
/// pushes (`pushes`: clients, pushes/s, p50 ms, p99 ms).
pub(crate) fn report(
    out: &mut String,
    sizes: &[SideBySide],
    pushes: &[(usize, f64, f64, f64)],
    ours: &[(usize, f64)],
    report_run_alone: f64,
) {
    let _ = writeln!(
        out,
        "\n### Side by side with Prometheus Pushgateway\n\n\
         Scrapes of an organization of N workflows (10 runs each) and of a Pushgateway holding N \
         groups (a job's push: up, last duration, last time), and a static floor serving \
         runplane's own response from memory; p50 in ms, medians of the batches'.\n"
    );
    let _ = writeln!(
        out,
        "| N | encoding | runplane | Pushgateway | floor | ÷ Pushgateway | ÷ floor | bytes: runplane / Pushgateway |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for s in sizes {
        for (name, results, column) in [("plain", &s.plain, 0), ("gzip", &s.gzip, 1)] {
            let [ours, theirs, floor] = results.each_ref().map(Repeated::p50);
            let _ = writeln!(
                out,
                "| {} | {name} | {ours:.2} | {theirs:.2} | {floor:.2} | {:.2}× | {:.2}× | {} / {} |",
                s.workflows,
                ours / theirs,
                ours / floor,
                crate::size(s.bytes[0][column]),
                crate::size(s.bytes[1][column]),
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| N | series: runplane / Pushgateway | per workflow (group) | bytes per series, plain: runplane / Pushgateway |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    for s in sizes {
        let per = |bytes: usize, series: usize| bytes as f64 / series.max(1) as f64;
        let _ = writeln!(
            out,
            "| {} | {} / {} | {:.1} / {:.1} | {:.0} / {:.0} |",
            s.workflows,
            s.series[0],
            s.series[1],
            s.series[0] as f64 / s.workflows as f64,
            s.series[1] as f64 / s.workflows as f64,
            per(s.bytes[0][0], s.series[0]),
            per(s.bytes[1][0], s.series[1]),
        );
    }
    let _ = writeln!(
        out,
        "\nIngestion next to Pushgateway (one push per run to its workflow's group, over 50 groups):\n"
    );
    let _ = writeln!(
        out,
        "| clients | runplane start + finish, runs/s | Pushgateway pushes/s, p50 / p99 (ms) | runplane ÷ Pushgateway |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    for (clients, rate, p50, p99) in pushes {
        let ours = ours
            .iter()
            .find(|(c, _)| c == clients)
            .map_or(f64::NAN, |(_, r)| *r);
        let _ = writeln!(
            out,
            "| {clients} | {ours:.0} | {rate:.0}, {p50:.2} / {p99:.2} | {:.2}× |",
            ours / rate
        );
    }
    if let Some((_, one, ..)) = pushes.iter().find(|p| p.0 == 1) {
        let _ = writeln!(
            out,
            "\nOne client, whole runs in one call (ReportRun): {report_run_alone:.0} runs/s, {:.2}× Pushgateway's single-client pushes.",
            report_run_alone / one
        );
    }
}

/// One client alone, in alternating rounds: ReportRun runs/s and Pushgateway
/// pushes/s of each round, and the median of the rounds' ratios.
pub(crate) fn alone_rounds(out: &mut String, rounds: &[(f64, f64)]) {
    if rounds.is_empty() {
        return;
    }
    let mut ratios: Vec<f64> = rounds.iter().map(|(ours, theirs)| ours / theirs).collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let each: Vec<String> = rounds
        .iter()
        .map(|(ours, theirs)| format!("{ours:.0} / {theirs:.0}"))
        .collect();
    let _ = writeln!(
        out,
        "\nOne client alone, ReportRun against Pushgateway's pushes in {} alternating rounds \
         (runs/s / pushes/s: {}): median ratio {median:.2}×.",
        rounds.len(),
        each.join(", ")
    );
}
