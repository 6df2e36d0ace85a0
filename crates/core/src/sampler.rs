//! Names of samplers, sigma schedules and timestep spacings.
//!
//! These are plain enums so that an impossible combination cannot be built:
//! a request names one sampler and one schedule, and each parses from the
//! snake_case name used in the API, the config file and the CLI.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A name that does not match any known variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {expected}")]
pub struct UnknownName {
    /// What was being parsed ("sampler", "schedule", "timestep spacing").
    pub what: &'static str,
    /// The rejected input (truncated to 80 characters).
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: String,
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical snake_case name.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let norm = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
                $(if norm == $text { return Ok($name::$variant); })+
                Err(UnknownName {
                    what: $what,
                    value: s.chars().take(80).collect(),
                    expected: [$($text),+].join(", "),
                })
            }
        }
    };
}

named_enum!(
    /// A sampling algorithm.
    SamplerKind, "sampler", {
        /// Euler's method on the probability-flow ODE (Karras et al. 2022, Alg. 2 with no churn).
        Euler => "euler",
        /// Euler with ancestral noise injection (stochastic).
        EulerAncestral => "euler_ancestral",
        /// Heun's second-order method (two network calls per step but the last).
        Heun => "heun",
        /// DPM-Solver++(2M), multistep second order (Lu et al. 2022).
        DpmPp2m => "dpmpp_2m",
        /// Deterministic DDIM (eta = 0).
        Ddim => "ddim",
        /// Latent consistency model sampling (for LCM-distilled models).
        Lcm => "lcm",
    }
);

named_enum!(
    /// How the noise levels of a run are spaced.
    ScheduleKind, "schedule", {
        /// The model's own schedule: the training sigmas at the chosen timesteps.
        Default => "default",
        /// Karras et al. (2022) schedule with rho = 7 between the model's sigma range.
        Karras => "karras",
        /// Log-linear spacing between the model's sigma range.
        Exponential => "exponential",
    }
);

named_enum!(
    /// How inference timesteps are picked from the training timesteps, as in diffusers.
    TimestepSpacing, "timestep spacing", {
        /// `arange(0, steps) * (T / steps)`, shifted by `steps_offset`.
        Leading => "leading",
        /// `round(arange(T, 0, -T / steps)) - 1`.
        Trailing => "trailing",
        /// `linspace(0, T - 1, steps)`.
        Linspace => "linspace",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_leniently_and_print_canonically() {
        assert_eq!(
            "Euler-Ancestral".parse::<SamplerKind>().unwrap(),
            SamplerKind::EulerAncestral
        );
        assert_eq!(SamplerKind::DpmPp2m.to_string(), "dpmpp_2m");
        for s in SamplerKind::ALL {
            assert_eq!(s.as_str().parse::<SamplerKind>().unwrap(), *s);
        }
    }

    #[test]
    fn unknown_names_list_the_alternatives() {
        let err = "plms".parse::<SamplerKind>().unwrap_err();
        assert!(err.to_string().contains("euler_ancestral"));
        assert_eq!(err.what, "sampler");
    }
}
