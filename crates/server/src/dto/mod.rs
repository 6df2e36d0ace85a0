//! Request and response bodies, and their parsing into validated types.
//!
//! - [`batches`]: the OpenAI Batch API's files, batches and input lines.
//! - [`images`]: the OpenAI Images request and response.
//! - [`jobs`]: the native job routes.
//! - [`loras`]: the LoRAs of a request (`loras` and `<lora:…>` tags).
//! - [`page_limit`]: the `limit` of a paged listing.

pub mod batches;
pub mod images;
pub mod jobs;
pub mod loras;

/// The page size of a listing: `requested`, or 20 (at most `max`, the
/// server's `limits.max_page_size`); outside 1..=`max` it is 400
/// `invalid_limit` naming the field.
pub fn page_limit(requested: Option<i64>, max: u32) -> Result<i64, crate::error::ApiError> {
    let max = i64::from(max);
    let limit = requested.unwrap_or(20.min(max));
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(crate::error::ApiError::invalid(
            "invalid_limit",
            "limit",
            format!("limit must be between 1 and {max}, got {limit}"),
        ))
    }
}
