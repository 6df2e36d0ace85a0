//! AUTOMATIC1111's sampler and scheduler names, and Easel's samplers and
//! sigma schedules behind them.
//!
//! The web UI names samplers for people ("Euler a") and accepts older
//! aliases ("k_euler_a"); before version 1.9 the schedule was part of the
//! name ("DPM++ 2M Karras"). All three forms are understood here. A name
//! of a sampler Easel does not implement ("DPM++ SDE", "UniPC") is 400
//! `unsupported_sampler`, never a silent substitute.

use easel_core::{SamplerKind, ScheduleKind};

use crate::error::ApiError;

/// One sampler as `GET /sdapi/v1/samplers` lists it.
pub struct SamplerName {
    /// The web UI's name.
    pub name: &'static str,
    /// Older names it also answers to.
    pub aliases: &'static [&'static str],
    /// Easel's sampler.
    pub kind: SamplerKind,
}

/// Every sampler Easel runs, under the web UI's names.
pub const SAMPLERS: &[SamplerName] = &[
    SamplerName {
        name: "DPM++ 2M",
        aliases: &["k_dpmpp_2m"],
        kind: SamplerKind::DpmPp2m,
    },
    SamplerName {
        name: "Euler a",
        aliases: &["k_euler_a", "k_euler_ancestral"],
        kind: SamplerKind::EulerAncestral,
    },
    SamplerName {
        name: "Euler",
        aliases: &["k_euler"],
        kind: SamplerKind::Euler,
    },
    SamplerName {
        name: "Heun",
        aliases: &["k_heun"],
        kind: SamplerKind::Heun,
    },
    SamplerName {
        name: "DDIM",
        aliases: &["ddim"],
        kind: SamplerKind::Ddim,
    },
    SamplerName {
        name: "LCM",
        aliases: &["k_lcm"],
        kind: SamplerKind::Lcm,
    },
];

/// One scheduler as `GET /sdapi/v1/schedulers` lists it.
pub struct SchedulerName {
    /// The web UI's name.
    pub name: &'static str,
    /// Its label.
    pub label: &'static str,
    /// Easel's sigma schedule.
    pub kind: ScheduleKind,
}

/// Every schedule Easel computes, under the web UI's names.
pub const SCHEDULERS: &[SchedulerName] = &[
    SchedulerName {
        name: "automatic",
        label: "Automatic",
        kind: ScheduleKind::Default,
    },
    SchedulerName {
        name: "karras",
        label: "Karras",
        kind: ScheduleKind::Karras,
    },
    SchedulerName {
        name: "exponential",
        label: "Exponential",
        kind: ScheduleKind::Exponential,
    },
];

/// The web UI's name of `kind`.
pub fn sampler_name(kind: SamplerKind) -> &'static str {
    SAMPLERS
        .iter()
        .find(|s| s.kind == kind)
        .map_or(kind.as_str(), |s| s.name)
}

/// The web UI's name of `kind`.
pub fn scheduler_name(kind: ScheduleKind) -> &'static str {
    SCHEDULERS
        .iter()
        .find(|s| s.kind == kind)
        .map_or(kind.as_str(), |s| s.name)
}

/// A sampler name (`field` names where it came from), with the schedule an
/// older combined name carries ("DPM++ 2M Karras" → Karras).
pub fn parse_sampler(
    field: &'static str,
    text: &str,
) -> Result<(SamplerKind, Option<ScheduleKind>), ApiError> {
    let text = text.trim();
    let lookup = |name: &str| {
        SAMPLERS
            .iter()
            .find(|s| {
                s.name.eq_ignore_ascii_case(name)
                    || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .map(|s| s.kind)
    };
    if let Some(kind) = lookup(text) {
        return Ok((kind, None));
    }
    for scheduler in SCHEDULERS
        .iter()
        .filter(|s| s.kind != ScheduleKind::Default)
    {
        if let Some(base) = strip_suffix_ci(text, scheduler.label)
            && let Some(kind) = lookup(base.trim_end())
        {
            return Ok((kind, Some(scheduler.kind)));
        }
    }
    Err(ApiError::invalid(
        "unsupported_sampler",
        field,
        format!(
            "{field} `{}` is not a sampler Easel runs; use one of: {} (GET /sdapi/v1/samplers)",
            text.chars().take(60).collect::<String>(),
            SAMPLERS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// A scheduler name.
pub fn parse_scheduler(field: &'static str, text: &str) -> Result<ScheduleKind, ApiError> {
    let text = text.trim();
    SCHEDULERS
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(text) || s.label.eq_ignore_ascii_case(text))
        .map(|s| s.kind)
        .ok_or_else(|| {
            ApiError::invalid(
                "unsupported_scheduler",
                field,
                format!(
                    "{field} `{}` is not a schedule Easel computes; use one of: {} \
                     (GET /sdapi/v1/schedulers)",
                    text.chars().take(60).collect::<String>(),
                    SCHEDULERS
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
}

fn strip_suffix_ci<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = text.len().checked_sub(suffix.len())?;
    (text.is_char_boundary(cut) && text[cut..].eq_ignore_ascii_case(suffix)).then(|| &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_combined_names_parse() {
        for s in SAMPLERS {
            assert_eq!(
                parse_sampler("sampler_name", s.name).unwrap(),
                (s.kind, None)
            );
            for a in s.aliases {
                assert_eq!(parse_sampler("sampler_name", a).unwrap().0, s.kind);
            }
            assert_eq!(sampler_name(s.kind), s.name);
        }
        assert_eq!(
            parse_sampler("sampler_name", "DPM++ 2M Karras").unwrap(),
            (SamplerKind::DpmPp2m, Some(ScheduleKind::Karras))
        );
        assert_eq!(
            parse_sampler("sampler_name", "euler a").unwrap().0,
            SamplerKind::EulerAncestral
        );
        assert_eq!(
            parse_scheduler("scheduler", "Karras").unwrap(),
            ScheduleKind::Karras
        );
        assert_eq!(
            parse_scheduler("scheduler", "automatic").unwrap(),
            ScheduleKind::Default
        );
    }

    #[test]
    fn unknown_names_are_refused_naming_the_field() {
        let e = parse_sampler("sampler_name", "UniPC").unwrap_err();
        assert_eq!(e.code(), "unsupported_sampler");
        assert!(e.to_string().contains("sampler_name"), "{e}");
        let e = parse_scheduler("scheduler", "sgm_uniform").unwrap_err();
        assert_eq!(e.code(), "unsupported_scheduler");
        assert!(parse_sampler("sampler_name", "Karras").is_err());
    }
}
