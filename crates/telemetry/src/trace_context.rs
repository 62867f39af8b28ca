//! W3C trace context across calls: read from every incoming request, written
//! on every outgoing call, and the organization a request acts for named on its
//! span.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The W3C trace id (32 hex digits) a request belongs to, as a request
/// extension: set by the server's observation layer when the request carried
/// a trace context or started a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceId(pub String);

/// Makes `span` a child of the W3C trace context in `headers`, if any, and
/// returns the trace id the request belongs to (for the request's log line).
pub fn extract(headers: &http::HeaderMap, span: &tracing::Span) -> Option<String> {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        let _ = span.set_parent(parent);
    }
    // With export on, the span's own trace (the remote one, or a new one).
    let own = span.context().span().span_context().clone();
    [own, remote]
        .into_iter()
        .find(|c| c.is_valid())
        .map(|c| c.trace_id().to_string())
}

/// Writes the current span's trace context into outgoing request headers.
pub fn inject(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// Records the organization a request acts for on its request span (and so on
/// its log line and trace).
pub fn record_org(org: &str) {
    tracing::Span::current().record("org", org);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incoming_traceparent_gives_the_trace_id_even_without_export() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let span = tracing::info_span!("test");
        assert_eq!(
            extract(&headers, &span).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(extract(&http::HeaderMap::new(), &span), None);
        let mut bad = http::HeaderMap::new();
        bad.insert("traceparent", http::HeaderValue::from_static("garbage"));
        assert_eq!(extract(&bad, &span), None);
    }
}
