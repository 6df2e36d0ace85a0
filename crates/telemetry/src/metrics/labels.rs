//! Label sets of the catalogue's families, and the closed vocabularies
//! (outcomes, moderation stages and actions) as enums.
//!
//! Every label is bounded: model names come from the configuration, tiers,
//! outcomes, stages and actions are fixed, codes are the stable error
//! codes, routes are axum's matched path templates. No prompt, user or job
//! id is ever a label.

use prometheus_client::encoding::EncodeLabelSet;

/// `route`, `method`, `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: String,
}

/// `route`, `method`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabels {
    pub route: String,
    pub method: String,
}

/// `model`, `tier`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelTierLabels {
    pub model: String,
    pub tier: String,
}

/// `model`, `stage`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StageLabels {
    pub model: String,
    pub stage: String,
}

/// `model`, `tier`, `outcome`, `code`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct JobLabels {
    pub model: String,
    pub tier: String,
    pub outcome: &'static str,
    pub code: String,
}

/// `tier`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TierLabels {
    pub tier: String,
}

/// `model`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelLabels {
    pub model: String,
}

/// `project`: a billable project's name, or `other` (bounded cardinality).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ProjectLabels {
    pub project: String,
}

/// `stage`, `action`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModerationLabels {
    pub stage: &'static str,
    pub action: &'static str,
}

/// `model`, `code`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelCodeLabels {
    pub model: String,
    pub code: String,
}

/// `model`, `device`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DeviceLabels {
    pub model: String,
    pub device: String,
}

/// `gpu`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct GpuLabels {
    pub gpu: String,
}

/// `version`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct VersionLabels {
    pub version: String,
}

/// How a job ended (`outcome` of `easel_jobs_finished_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Its images were stored.
    Succeeded,
    /// The engine, post-processing, storage or its deadline failed it.
    Failed,
    /// The service refused it: a full queue, or image moderation.
    Rejected,
    /// Its owner cancelled it (queued or running).
    Cancelled,
}

impl JobOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Failed => "failed",
            JobOutcome::Rejected => "rejected",
            JobOutcome::Cancelled => "cancelled",
        }
    }
}

/// Where a moderation decision was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModerationStage {
    /// The prompt policy, at the edge, before a job is stored.
    Prompt,
    /// The image classifier, after the engine.
    Image,
}

impl ModerationStage {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationStage::Prompt => "prompt",
            ModerationStage::Image => "image",
        }
    }
}

/// What a moderation decision was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModerationAction {
    /// Let through unmarked.
    Allow,
    /// Let through, flagged and audited.
    Flag,
    /// Refused.
    Block,
}

impl ModerationAction {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationAction::Allow => "allow",
            ModerationAction::Flag => "flag",
            ModerationAction::Block => "block",
        }
    }
}

/// `model`, `outcome` (`started`, `promoted`, `rolled_back`, `aborted`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RolloutLabels {
    pub model: String,
    pub outcome: String,
}

/// `model`, `version` (a bounded label: [`super::version_label`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelVersionLabels {
    pub model: String,
    pub version: String,
}

/// `model`, `version`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelVersionOutcomeLabels {
    pub model: String,
    pub version: String,
    pub outcome: String,
}

/// `model`, `reason` (`sampled`, `flagged`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelReasonLabels {
    pub model: String,
    pub reason: String,
}

/// `model`, `version`, `verdict` (`good`, `bad`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ModelVersionVerdictLabels {
    pub model: String,
    pub version: String,
    pub verdict: String,
}

/// `window` (`1h`, `1d`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WindowLabels {
    pub window: String,
}
