//! The SLIs between two scrapes (rates, window quantiles, latest gauges)
//! and their text rendering. Names and labels are the metric catalogue's
//! (docs/observability.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::exposition::{Exposition, quantile};

const TIERS: [&str; 2] = ["realtime", "batch"];

/// One tier's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct TierFrame {
    /// `realtime` or `batch`.
    pub tier: String,
    /// Jobs finished per second, by outcome.
    pub finished_per_s: BTreeMap<String, f64>,
    /// P50 and P95 of succeeded jobs' latency in the window (seconds).
    pub p50_s: Option<f64>,
    /// See `p50_s`.
    pub p95_s: Option<f64>,
    /// Queued jobs now.
    pub queue_depth: f64,
    /// Age of the oldest queued job now (seconds).
    pub oldest_age_s: f64,
}

/// Everything one frame shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Seconds between the two scrapes.
    pub window_s: f64,
    /// `easel_build_info`'s version.
    pub version: Option<String>,
    /// HTTP requests per second, total.
    pub http_per_s: f64,
    /// HTTP requests per second by status class (`2xx`, `4xx`, ...).
    pub http_by_class: BTreeMap<String, f64>,
    /// Succeeded / finished jobs not cancelled, in the window.
    pub success_ratio: Option<f64>,
    /// Failed or rejected jobs per second, by code.
    pub errors_by_code: BTreeMap<String, f64>,
    /// Per tier.
    pub tiers: Vec<TierFrame>,
    /// Images stored per second.
    pub images_per_s: f64,
    /// Median images per engine call in the window.
    pub batch_p50: Option<f64>,
    /// Cost per image in the window (None without images).
    pub cost_per_image: Option<f64>,
    /// P95 per stage in the window (seconds), slowest first.
    pub stages_p95_s: Vec<(String, f64)>,
    /// Models ready in the pool.
    pub models_loaded: Option<f64>,
    /// Weights held per model (bytes).
    pub model_memory: BTreeMap<String, f64>,
    /// Moderation decisions per second by (stage, action).
    pub moderation_per_s: BTreeMap<(String, String), f64>,
    /// Median quality score in the window.
    pub quality_p50: Option<f64>,
    /// Process CPU utilisation (0..1).
    pub cpu: Option<f64>,
    /// GPU utilisation by GPU (0..1).
    pub gpus: BTreeMap<String, f64>,
}

/// `cur - prev`, or `cur` when the counter was reset in between.
fn increase(prev: f64, cur: f64) -> f64 {
    if cur >= prev { cur - prev } else { cur }
}

/// Per label-set increase of counter `name` between two scrapes, summed
/// by the value of `by` (one group `""` when `by` is empty).
fn increases_by(
    prev: &Exposition,
    cur: &Exposition,
    name: &str,
    by: &[&str],
) -> BTreeMap<Vec<String>, f64> {
    let before: BTreeMap<_, f64> = prev
        .select(name, &[])
        .map(|s| (s.labels.clone(), s.value))
        .collect();
    let mut out = BTreeMap::new();
    for s in cur.select(name, &[]) {
        let inc = increase(before.get(&s.labels).copied().unwrap_or(0.0), s.value);
        let key: Vec<String> = by
            .iter()
            .map(|l| s.labels.get(*l).cloned().unwrap_or_default())
            .collect();
        *out.entry(key).or_insert(0.0) += inc;
    }
    out
}

/// Quantile `q` of the observations histogram `name` (series matching
/// `filter`) received between the scrapes.
fn window_quantile(
    prev: &Exposition,
    cur: &Exposition,
    name: &str,
    filter: &[(&str, &str)],
    q: f64,
) -> Option<f64> {
    let before: BTreeMap<u64, f64> = prev
        .buckets(name, filter)
        .into_iter()
        .map(|(le, c)| (le.to_bits(), c))
        .collect();
    let delta: Vec<(f64, f64)> = cur
        .buckets(name, filter)
        .into_iter()
        .map(|(le, c)| {
            (
                le,
                increase(before.get(&le.to_bits()).copied().unwrap_or(0.0), c),
            )
        })
        .collect();
    quantile(q, &delta)
}

fn filtered_increase(
    prev: &Exposition,
    cur: &Exposition,
    name: &str,
    filter: &[(&str, &str)],
) -> f64 {
    let before: BTreeMap<_, f64> = prev
        .select(name, filter)
        .map(|s| (s.labels.clone(), s.value))
        .collect();
    cur.select(name, filter)
        .map(|s| increase(before.get(&s.labels).copied().unwrap_or(0.0), s.value))
        .sum()
}

fn gauge(cur: &Exposition, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
    let mut it = cur.select(name, filter).peekable();
    it.peek()?;
    Some(it.map(|s| s.value).sum())
}

impl Frame {
    /// The SLIs between scrape `prev` and scrape `cur`, `window_s` apart.
    pub fn between(prev: &Exposition, cur: &Exposition, window_s: f64) -> Self {
        let dt = window_s.max(1e-9);
        let per_s = |x: f64| x / dt;

        let http = increases_by(prev, cur, "easel_http_requests_total", &["status"]);
        let mut http_by_class = BTreeMap::new();
        for (k, v) in &http {
            let class = format!("{}xx", k[0].chars().next().unwrap_or('?'));
            *http_by_class.entry(class).or_insert(0.0) += per_s(*v);
        }
        let http_per_s = per_s(http.values().sum());

        let jobs = increases_by(
            prev,
            cur,
            "easel_jobs_finished_total",
            &["tier", "outcome", "code"],
        );
        let outcome_total = |pred: &dyn Fn(&str) -> bool| -> f64 {
            jobs.iter()
                .filter(|(k, _)| pred(&k[1]))
                .map(|(_, v)| v)
                .sum()
        };
        let counted = outcome_total(&|o| o != "cancelled");
        let succeeded = outcome_total(&|o| o == "succeeded");
        let success_ratio = (counted > 0.0).then(|| succeeded / counted);
        let mut errors_by_code = BTreeMap::new();
        for (k, v) in &jobs {
            if (k[1] == "failed" || k[1] == "rejected") && *v > 0.0 {
                *errors_by_code.entry(k[2].clone()).or_insert(0.0) += per_s(*v);
            }
        }

        let tiers = TIERS
            .iter()
            .map(|tier| {
                let mut finished_per_s = BTreeMap::new();
                for (k, v) in &jobs {
                    if k[0] == *tier {
                        *finished_per_s.entry(k[1].clone()).or_insert(0.0) += per_s(*v);
                    }
                }
                let f = [("tier", *tier)];
                TierFrame {
                    tier: tier.to_string(),
                    finished_per_s,
                    p50_s: window_quantile(prev, cur, "easel_generation_duration_seconds", &f, 0.5),
                    p95_s: window_quantile(
                        prev,
                        cur,
                        "easel_generation_duration_seconds",
                        &f,
                        0.95,
                    ),
                    queue_depth: gauge(cur, "easel_queue_depth", &f).unwrap_or(0.0),
                    oldest_age_s: gauge(cur, "easel_queue_oldest_age_seconds", &f).unwrap_or(0.0),
                }
            })
            .collect();

        let images = filtered_increase(prev, cur, "easel_images_generated_total", &[]);
        let cost = filtered_increase(prev, cur, "easel_cost_total", &[]);
        let mut stages_p95_s: Vec<(String, f64)> = cur
            .label_values("easel_stage_duration_seconds_bucket", "stage")
            .into_iter()
            .filter_map(|stage| {
                window_quantile(
                    prev,
                    cur,
                    "easel_stage_duration_seconds",
                    &[("stage", &stage)],
                    0.95,
                )
                .map(|p| (stage, p))
            })
            .collect();
        stages_p95_s.sort_by(|a, b| b.1.total_cmp(&a.1));

        let model_memory = cur
            .select("easel_model_memory_bytes", &[])
            .map(|s| (s.labels.get("model").cloned().unwrap_or_default(), s.value))
            .collect();
        let moderation_per_s = increases_by(
            prev,
            cur,
            "easel_moderation_decisions_total",
            &["stage", "action"],
        )
        .into_iter()
        .map(|(k, v)| ((k[0].clone(), k[1].clone()), per_s(v)))
        .collect();
        let gpus = cur
            .select("easel_gpu_utilization_ratio", &[])
            .map(|s| (s.labels.get("gpu").cloned().unwrap_or_default(), s.value))
            .collect();

        Frame {
            window_s,
            version: cur
                .select("easel_build_info", &[])
                .find_map(|s| s.labels.get("version").cloned()),
            http_per_s,
            http_by_class,
            success_ratio,
            errors_by_code,
            tiers,
            images_per_s: per_s(images),
            batch_p50: window_quantile(prev, cur, "easel_batch_images", &[], 0.5),
            cost_per_image: (images > 0.0).then(|| cost / images),
            stages_p95_s,
            models_loaded: gauge(cur, "easel_models_loaded", &[]),
            model_memory,
            moderation_per_s,
            quality_p50: window_quantile(prev, cur, "easel_image_quality_score", &[], 0.5),
            cpu: gauge(cur, "easel_cpu_utilization_ratio", &[]),
            gpus,
        }
    }

    /// The frame as text, one SLI group a line.
    pub fn render(&self, url: &str) -> String {
        let mut o = String::new();
        let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or("-".to_string(), f);
        let secs = |s: f64| {
            if s < 1.0 {
                format!("{:.0}ms", s * 1000.0)
            } else {
                format!("{s:.2}s")
            }
        };
        let pct = |r: f64| format!("{:.1}%", r * 100.0);
        let _ = writeln!(
            o,
            "easel top  {url}  version {}  window {:.1}s",
            self.version.as_deref().unwrap_or("?"),
            self.window_s
        );
        let classes: Vec<String> = self
            .http_by_class
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}/s"))
            .collect();
        let _ = writeln!(
            o,
            "HTTP        {:.2} req/s  {}",
            self.http_per_s,
            classes.join("  ")
        );
        let _ = writeln!(
            o,
            "Success     {} of finished jobs (SLO 99.5%)",
            opt(self.success_ratio, &|r| pct(r))
        );
        if !self.errors_by_code.is_empty() {
            let e: Vec<String> = self
                .errors_by_code
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}/s"))
                .collect();
            let _ = writeln!(o, "Errors      {}", e.join("  "));
        }
        for t in &self.tiers {
            let finished: Vec<String> = t
                .finished_per_s
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}/s"))
                .collect();
            let _ = writeln!(
                o,
                "{:<11} P50 {}  P95 {}  queued {:.0}  oldest {}  {}",
                t.tier,
                opt(t.p50_s, &secs),
                opt(t.p95_s, &secs),
                t.queue_depth,
                secs(t.oldest_age_s),
                finished.join("  ")
            );
        }
        let _ = writeln!(
            o,
            "Images      {:.2}/s  batch P50 {}  cost/image {}",
            self.images_per_s,
            opt(self.batch_p50, &|b| format!("{b:.1}")),
            opt(self.cost_per_image, &|c| format!("{c:.6}"))
        );
        if !self.stages_p95_s.is_empty() {
            let s: Vec<String> = self
                .stages_p95_s
                .iter()
                .map(|(k, v)| format!("{k} {}", secs(*v)))
                .collect();
            let _ = writeln!(o, "Stages P95  {}", s.join("  "));
        }
        let mem: Vec<String> = self
            .model_memory
            .iter()
            .map(|(k, v)| format!("{k} {:.1} MB", v / 1e6))
            .collect();
        let _ = writeln!(
            o,
            "Models      loaded {}  {}",
            opt(self.models_loaded, &|n| format!("{n:.0}")),
            mem.join("  ")
        );
        let m: Vec<String> = self
            .moderation_per_s
            .iter()
            .map(|((stage, action), v)| format!("{stage}/{action} {v:.2}/s"))
            .collect();
        let _ = writeln!(
            o,
            "Moderation  {}",
            if m.is_empty() {
                "-".into()
            } else {
                m.join("  ")
            }
        );
        let _ = writeln!(
            o,
            "Quality     median {}",
            opt(self.quality_p50, &|q| format!("{q:.3}"))
        );
        let gpus: Vec<String> = self
            .gpus
            .iter()
            .map(|(k, v)| format!("gpu{k} {}", pct(*v)))
            .collect();
        let _ = writeln!(
            o,
            "Device      cpu {}  {}",
            opt(self.cpu, &|c| pct(c)),
            gpus.join("  ")
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = include_str!("../../tests/fixtures/top/before.prom");
    const AFTER: &str = include_str!("../../tests/fixtures/top/after.prom");

    fn frame() -> Frame {
        let before = Exposition::parse(BEFORE).unwrap();
        let after = Exposition::parse(AFTER).unwrap();
        Frame::between(&before, &after, 10.0)
    }

    #[test]
    fn counters_become_rates_over_the_window() {
        let f = frame();
        // 20 more 200s and 10 more 400s in 10 s.
        assert_eq!(f.http_per_s, 3.0);
        assert_eq!(f.http_by_class["2xx"], 2.0);
        assert_eq!(f.http_by_class["4xx"], 1.0);
        // 18 succeeded, 1 failed, 1 rejected, 5 cancelled (not counted).
        assert_eq!(f.success_ratio, Some(0.9));
        assert_eq!(f.errors_by_code["engine_failed"], 0.1);
        assert_eq!(f.errors_by_code["image_rejected"], 0.1);
        assert_eq!(f.images_per_s, 1.8);
        assert_eq!(f.cost_per_image, Some(0.5));
    }

    #[test]
    fn histograms_become_window_quantiles() {
        let f = frame();
        let rt = &f.tiers[0];
        assert_eq!(rt.tier, "realtime");
        // In the window: 10 realtime jobs in (0.5, 1], 8 in (1, 2].
        let near = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-9);
        assert!(near(rt.p50_s, 0.5 + 0.5 * 9.0 / 10.0), "{:?}", rt.p50_s);
        assert!(
            near(rt.p95_s, 1.0 + 1.0 * (17.1 - 10.0) / 8.0),
            "{:?}",
            rt.p95_s
        );
        assert_eq!((rt.queue_depth, rt.oldest_age_s), (3.0, 4.5));
        assert_eq!(
            f.tiers[1].p50_s, None,
            "no batch job finished in the window"
        );
        assert_eq!(f.stages_p95_s[0].0, "denoise_step");
    }

    #[test]
    fn an_openmetrics_scrape_gives_the_same_slis() {
        // From an empty scrape (a server just started) to the fixture, 1 s.
        let om = include_str!("../../tests/fixtures/top/openmetrics.txt");
        let cur = Exposition::parse(om).unwrap();
        let f = Frame::between(&Exposition::default(), &cur, 1.0);
        assert_eq!(f.version.as_deref(), Some("0.1.0"));
        assert_eq!(f.http_per_s, 9.0);
        assert_eq!(f.http_by_class["2xx"], 6.0);
        assert_eq!(f.http_by_class["4xx"], 3.0);
        // 6 succeeded, 1 failed; the cancelled one counts neither way.
        assert_eq!(f.success_ratio, Some(6.0 / 7.0));
        assert_eq!(f.errors_by_code["deadline_exceeded"], 1.0);
        assert_eq!(f.images_per_s, 6.0);
        assert_eq!(f.cost_per_image, Some(0.0));
        assert_eq!(f.tiers[0].p50_s, Some(0.375));
        assert_eq!(f.tiers[1].queue_depth, 2.0);
        assert_eq!((f.models_loaded, f.cpu), (Some(1.0), Some(0.25)));
        let text = f.render("http://127.0.0.1:8080");
        assert!(text.contains("HTTP        9.00 req/s"), "{text}");
        assert!(text.contains("version 0.1.0"), "{text}");

        // The same scrape twice: nothing happened in between.
        let still = Frame::between(&cur, &cur, 1.0);
        assert_eq!((still.http_per_s, still.success_ratio), (0.0, None));
    }

    #[test]
    fn a_reset_counter_counts_its_new_value() {
        let before = Exposition::parse("easel_images_generated_total{model=\"m\"} 100\n").unwrap();
        let after = Exposition::parse("easel_images_generated_total{model=\"m\"} 4\n").unwrap();
        assert_eq!(Frame::between(&before, &after, 2.0).images_per_s, 2.0);
    }

    #[test]
    fn the_frame_shows_every_sli_group() {
        let text = frame().render("http://127.0.0.1:8080");
        for want in [
            "HTTP",
            "Success     90.0%",
            "realtime",
            "batch",
            "Images",
            "Stages P95",
            "Models",
            "Moderation",
            "Quality",
            "Device",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
