//! [`ViewHolder`]: the latest [`ClusterView`] this node has adopted, and the rule for adopting
//! another: a view of an older term comes from a superseded coordinator and is refused (the
//! newer view held is the answer), an older version of the same coordinator's term is
//! ignored, a view whose indices point outside it is refused as invalid, anything else is
//! adopted.

use std::sync::{Arc, RwLock};

use crate::cluster::wire::ClusterView;

/// What offering a view did.
#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    /// Adopted.
    Adopted(Arc<ClusterView>),
    /// Older than the one held, from the same coordinator and term: ignored.
    Ignored,
    /// Of an older term: refused; the newer view held is returned for the sender.
    Refused(Arc<ClusterView>),
    /// Its indices point outside it ([`ClusterView::check`]): never adopted.
    Invalid(String),
}

/// The view this node routes by.
#[derive(Default)]
pub struct ViewHolder(RwLock<Arc<ClusterView>>);

impl ViewHolder {
    /// The current view.
    pub fn get(&self) -> Arc<ClusterView> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Offers `view`, adopting it unless the rule of the module doc says otherwise.
    pub fn offer(&self, view: ClusterView) -> Offer {
        if let Err(e) = view.check() {
            return Offer::Invalid(e);
        }
        let mut held = self.0.write().unwrap_or_else(|e| e.into_inner());
        if view.term < held.term {
            return Offer::Refused(Arc::clone(&held));
        }
        if view.term == held.term && view.version < held.version && held.coordinator == view.coordinator {
            return Offer::Ignored;
        }
        let view = Arc::new(view);
        *held = Arc::clone(&view);
        Offer::Adopted(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(term: u64, version: u64, coordinator: &str) -> ClusterView {
        ClusterView { term, version, coordinator: coordinator.into(), ..ClusterView::default() }
    }

    #[test]
    fn older_terms_are_refused_and_older_versions_ignored() {
        let holder = ViewHolder::default();
        assert!(matches!(holder.offer(view(1, 5, "a")), Offer::Adopted(_)));
        assert_eq!(holder.offer(view(0, 9, "b")), Offer::Refused(Arc::new(view(1, 5, "a"))));
        assert_eq!(holder.offer(view(1, 4, "a")), Offer::Ignored);
        // The same term from another coordinator, or a newer term, is adopted.
        assert!(matches!(holder.offer(view(1, 4, "b")), Offer::Adopted(_)));
        assert!(matches!(holder.offer(view(2, 0, "c")), Offer::Adopted(_)));
        assert_eq!(holder.get().coordinator, "c");
    }

    #[test]
    fn a_view_with_an_index_outside_it_is_never_adopted() {
        let holder = ViewHolder::default();
        let mut bad = crate::cluster::wire::view::tests::two_stages();
        bad.term = 3;
        bad.registry[0].status.placement.assignments.push(crate::plan::placement::Assignment {
            shard: 2,
            replica: 0,
            node: "a".into(),
        });
        assert!(matches!(holder.offer(bad), Offer::Invalid(e) if e.contains("shard 2")));
        assert_eq!(holder.get().term, 0, "nothing adopted");
        let mut good = crate::cluster::wire::view::tests::two_stages();
        good.term = 3;
        assert!(matches!(holder.offer(good), Offer::Adopted(_)));
    }
}
