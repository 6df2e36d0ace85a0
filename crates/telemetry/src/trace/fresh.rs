//! A per-layer filter that is asked about every span and event.
//!
//! `tracing-subscriber` passes a per-layer filter's decision from
//! `enabled()` to the layer's `on_event`/`on_new_span` through a
//! thread-local bitmap. When a callsite's interest is cached as `always`,
//! the `tracing` macros skip `enabled()`, and the layer reads whatever the
//! previous `enabled()` call on that thread left there. Calls with
//! per-call metadata that bypass the cache (the `log` bridge: sqlx logs
//! every query through `log`) leave stale "disabled" bits, and the next
//! event of an `always` callsite (a worker's `job succeeded` right after
//! its database write, a request's lines after a query) silently vanished
//! from the log (tokio-rs/tracing#2519). [`Fresh`] caps the interest at
//! `sometimes`, so `enabled()` runs for every span and event and the bitmap
//! is always current. The cost is one filter evaluation per event.

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};

/// `F`, with `always` interest reported as `sometimes`.
pub(super) struct Fresh<F>(pub(super) F);

impl<S: Subscriber, F: Filter<S>> Filter<S> for Fresh<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.0.callsite_enabled(meta).is_never() {
            Interest::never()
        } else {
            Interest::sometimes()
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        self.0.on_new_span(attrs, id, cx)
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: Context<'_, S>,
    ) {
        self.0.on_record(id, values, cx)
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx)
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx)
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx)
    }
}
