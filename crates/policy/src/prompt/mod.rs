//! Prompt policy (work in progress).
