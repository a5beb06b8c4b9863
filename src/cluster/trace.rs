//! W3C trace context (`traceparent: 00-<trace id>-<parent id>-<flags>`): the trace id a
//! request carries from the node that took it to every stage, so that one request's spans on
//! every node share it. Taken from the client's `traceparent` when it sends a valid one,
//! started here otherwise.

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
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if version != "00" || parts.next().is_some() || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
            return None;
        }
        let id = u128::from_str_radix(trace, 16).ok()?;
        let parent = u64::from_str_radix(parent, 16).ok()?;
        (id != 0 && parent != 0).then_some(TraceId(id))
    }

    /// A `traceparent` naming this trace with `span` as the parent span (sampled).
    pub fn traceparent(self, span: u64) -> String {
        format!("00-{:032x}-{:016x}-01", self.0, span.max(1))
    }
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
    }
}
