//! Which version serves a request (pure; no runtime).
//!
//! A served name is an alias: without a running rollout every request gets
//! the version the alias points at. A canary rollout sends `percent` of
//! the callers to its candidate, *sticky per caller*: the caller's key and
//! the rollout's id are hashed into a number in [0, 100), and the caller
//! is in the canary when that number is below `percent`. The same caller
//! therefore gets the same version for the whole rollout (and raising the
//! percentage only adds callers); a different rollout of the same alias
//! draws a different set. A request with no caller identity (anonymous,
//! without OpenAI's `user` field) is drawn by its job id, so it is sticky
//! to nothing but itself.
//!
//! A shadow rollout changes nothing the caller gets: every request is
//! served by the alias's version, and `percent` of the *requests* (drawn
//! by job id, so the sample is spread over all callers) are also run on
//! the candidate, unseen.

use std::collections::HashMap;

/// A running rollout as the router sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    /// The rollout's id.
    pub id: String,
    /// The version the alias served when it started.
    pub baseline: String,
    /// The version under test.
    pub candidate: String,
    /// The candidate's share, 0 to 100.
    pub percent: f64,
    /// A shadow rollout (else a canary).
    pub shadow: bool,
}

/// What every process routes by: aliases and running rollouts, per alias.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Aliases pointing at a promoted version.
    pub aliases: HashMap<String, String>,
    /// The running rollout of each alias.
    pub running: HashMap<String, Active>,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The version to run it on.
    pub version: String,
    /// The version to run it on instead if that one fails it (set for
    /// canary traffic).
    pub fallback: Option<String>,
    /// The version to run it on as well, unseen (a shadow rollout's
    /// candidate).
    pub shadow: Option<String>,
}

/// The caller's position in [0, 100) for rollout `rollout`.
pub fn draw(rollout: &str, caller: &str) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(rollout.as_bytes());
    hasher.update(&[0]);
    hasher.update(caller.as_bytes());
    let bytes = hasher.finalize();
    let x = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"));
    (x >> 11) as f64 / (1u64 << 53) as f64 * 100.0
}

impl Table {
    /// The version of `model` for request `request` of `caller`: a
    /// canary's candidate when the caller is drawn into it, else the
    /// alias's version, else `configured` (the configured folder's
    /// version); with a shadow rollout's candidate as well when the
    /// request is drawn into it.
    pub fn route(
        &self,
        model: &str,
        caller: &str,
        request: &str,
        configured: Option<&str>,
    ) -> Option<Route> {
        let running = self.running.get(model);
        if let Some(r) = running
            && !r.shadow
            && draw(&r.id, caller) < r.percent
        {
            return Some(Route {
                version: r.candidate.clone(),
                fallback: Some(r.baseline.clone()),
                shadow: None,
            });
        }
        let version = self.aliases.get(model).map(String::as_str).or(configured)?;
        let shadow = running
            .filter(|r| r.shadow && r.candidate != version && draw(&r.id, request) < r.percent)
            .map(|r| r.candidate.clone());
        Some(Route {
            version: version.to_string(),
            fallback: None,
            shadow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(percent: f64) -> Table {
        let mut t = Table::default();
        t.running.insert(
            "m".into(),
            Active {
                id: "ro_1".into(),
                baseline: "b".into(),
                candidate: "c".into(),
                percent,
                shadow: false,
            },
        );
        t
    }

    #[test]
    fn the_share_is_honoured_and_sticky_per_caller() {
        let t = table(20.0);
        let callers: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let canary = callers
            .iter()
            .filter(|c| t.route("m", c, c, Some("b")).unwrap().version == "c")
            .count();
        // 20 % of 10,000 = 2,000; the binomial's sd is 40.
        assert!((1_850..=2_150).contains(&canary), "{canary}");
        for c in &callers[..100] {
            let first = t.route("m", c, c, Some("b"));
            assert_eq!(first, t.route("m", c, c, Some("b")));
        }
        // Raising the share keeps everyone already in the canary.
        let wider = table(50.0);
        for c in &callers {
            if t.route("m", c, c, Some("b")).unwrap().version == "c" {
                assert_eq!(wider.route("m", c, c, Some("b")).unwrap().version, "c");
            }
        }
    }

    #[test]
    fn canary_traffic_falls_back_to_the_baseline_and_the_rest_follows_the_alias() {
        let mut t = table(100.0);
        let r = t.route("m", "u", "j", Some("b")).unwrap();
        assert_eq!(
            (r.version.as_str(), r.fallback.as_deref()),
            ("c", Some("b"))
        );
        t.running.clear();
        assert_eq!(t.route("m", "u", "j", Some("b")).unwrap().version, "b");
        t.aliases.insert("m".into(), "c".into());
        let r = t.route("m", "u", "j", Some("b")).unwrap();
        assert_eq!(
            (r.version.as_str(), r.fallback, r.shadow),
            ("c", None, None)
        );
        assert_eq!(t.route("other", "u", "j", None), None);
        assert_eq!(
            table(0.0).route("m", "u", "j", Some("b")).unwrap().version,
            "b"
        );
    }

    #[test]
    fn a_shadow_serves_the_baseline_and_shadows_a_share_of_requests() {
        let mut t = table(30.0);
        t.running.get_mut("m").unwrap().shadow = true;
        let mut shadowed = 0;
        for i in 0..10_000 {
            let r = t
                .route("m", "one-user", &format!("job-{i}"), Some("b"))
                .unwrap();
            assert_eq!((r.version.as_str(), r.fallback.as_deref()), ("b", None));
            if let Some(v) = r.shadow {
                assert_eq!(v, "c");
                shadowed += 1;
            }
        }
        // Per request, not per caller: one caller's requests are spread.
        // 30 % of 10,000 = 3,000; the binomial's sd is 46.
        assert!((2_800..=3_200).contains(&shadowed), "{shadowed}");
        // Once promoted the alias serves the candidate: nothing to shadow.
        t.aliases.insert("m".into(), "c".into());
        assert!((0..100).all(|i| {
            let r = t.route("m", "u", &format!("job-{i}"), Some("b")).unwrap();
            r.version == "c" && r.shadow.is_none()
        }));
    }
}
