//! Image moderation (work in progress).
