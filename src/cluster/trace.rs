//! W3C trace context (`traceparent: 00-<trace id>-<parent id>-<flags>`): the trace id a
//! request carries from the node that took it to every stage, so that one request's spans on
//! every node share it. Taken from the client's `traceparent` when it sends a valid one,
//! started here otherwise.
//!
//! With span export on (`crate::server::telemetry`), each span also has an OpenTelemetry
//! span id: a stage's [`SpanParent`] names the span that sent it, so the spans of one request
//! on three nodes form one tree. Without it every span id reads 0 and nothing else changes.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A request's trace id (128 bits, never zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct TraceId(pub u128);

impl TraceId {
    /// A fresh random trace id.
    pub fn random() -> TraceId {
        TraceId(fastrand::u128(1..))
    }

    /// The trace id of a `traceparent` header value, when it is a valid version-00 one
    /// (lowercase hex, neither id all zeros).
    pub fn from_traceparent(value: &str) -> Option<TraceId> {
        parse_traceparent(value).map(|(trace, _)| trace)
    }

    /// A `traceparent` naming this trace with `span` as the parent span (sampled).
    pub fn traceparent(self, span: u64) -> String {
        format!("00-{:032x}-{:016x}-01", self.0, span.max(1))
    }
}

/// The trace and the caller's span of a `traceparent` header value, when it is a valid
/// version-00 one (lowercase hex, neither id all zeros).
pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanParent)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if version != "00" || parts.next().is_some() || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
        return None;
    }
    let id = u128::from_str_radix(trace, 16).ok()?;
    let span = u64::from_str_radix(parent, 16).ok()?;
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    (id != 0 && span != 0).then_some((TraceId(id), SpanParent { span, sampled }))
}

/// The span a stage's span continues: the OpenTelemetry span id of the span that sent it
/// (0 when none was exported) and whether that trace is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SpanParent {
    /// The parent's span id; 0 for none.
    pub span: u64,
    /// Whether the parent's trace is sampled (exported).
    pub sampled: bool,
}

impl SpanParent {
    /// `span` as the parent of what it sends on (its OpenTelemetry span id, 0 when no
    /// OpenTelemetry layer is installed).
    pub fn of(span: &tracing::Span) -> SpanParent {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return SpanParent::default();
        }
        SpanParent { span: u64::from_be_bytes(sc.span_id().to_bytes()), sampled: sc.is_sampled() }
    }

    /// Makes `span` (created, not yet entered) a child of this remote parent in `trace`;
    /// nothing when there is no parent or no OpenTelemetry layer.
    pub fn adopt(self, span: &tracing::Span, trace: TraceId) {
        if self.span == 0 || trace.0 == 0 {
            return;
        }
        let flags = if self.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let remote = SpanContext::new(
            opentelemetry::trace::TraceId::from(trace.0),
            SpanId::from(self.span),
            flags,
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

impl SpanParent {
    /// Links `span` to this span of `trace` (a batch's span to the requests it carries
    /// beside the first, whose child it is); nothing without an OpenTelemetry layer.
    pub fn link(self, span: &tracing::Span, trace: TraceId) {
        if self.span == 0 || trace.0 == 0 {
            return;
        }
        let flags = if self.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        span.add_link(SpanContext::new(
            opentelemetry::trace::TraceId::from(trace.0),
            SpanId::from(self.span),
            flags,
            true,
            TraceState::default(),
        ));
    }
}

/// The trace OpenTelemetry put `span` in, when an OpenTelemetry layer is installed.
pub fn exported_trace(span: &tracing::Span) -> Option<TraceId> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| TraceId(u128::from_be_bytes(sc.trace_id().to_bytes())))
}

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_refused() {
        let t = TraceId::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(TraceId::from_traceparent(&t.traceparent(7)), Some(t));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        ] {
            assert_eq!(TraceId::from_traceparent(bad), None, "{bad}");
        }
        assert_ne!(TraceId::random().0, 0);
        let (_, parent) = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert_eq!(parent, SpanParent { span: 0x00f067aa0ba902b7, sampled: false });
        // Without an OpenTelemetry layer a span has no id, and adopting a parent does nothing.
        let span = tracing::info_span!("x");
        assert_eq!(SpanParent::of(&span), SpanParent::default());
        parent.adopt(&span, t);
        assert_eq!(exported_trace(&span), None);
    }
}
