//! C2PA Content Credentials (work in progress).
