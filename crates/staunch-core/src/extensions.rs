//! Per-request metadata for the layers, shared between clones of a request.

use std::fmt;
use std::sync::Arc;

/// A type map of per-request metadata (a [`Deadline`](crate::Deadline), the
/// budget's allowance, your own markers), with the API of
/// [`http::Extensions`].
///
/// A request is cloned by every layer that may send it again (a retry keeps
/// a copy per attempt, a fallback chain one per target), and an
/// `http::Extensions` clones its whole map each time. This one shares the
/// map between clones and copies it only when a clone that shares it is
/// written to, so cloning a request stays O(1) whatever its extensions
/// hold. A write to one clone is never seen by another.
///
/// ```
/// use staunch_core::Extensions;
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Tenant(&'static str);
///
/// let mut first = Extensions::new();
/// first.insert(Tenant("acme"));
/// let mut second = first.clone();
/// second.insert(Tenant("globex"));
/// assert_eq!(first.get::<Tenant>(), Some(&Tenant("acme")));
/// assert_eq!(second.get::<Tenant>(), Some(&Tenant("globex")));
/// ```
#[derive(Clone, Default)]
pub struct Extensions {
    map: Option<Arc<http::Extensions>>,
}

impl Extensions {
    /// An empty map; it allocates nothing until the first insert.
    pub const fn new() -> Self {
        Extensions { map: None }
    }

    /// Inserts `value`, returning the value of its type that was there.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        self.writable().insert(value)
    }

    /// The value of type `T`, if any.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map.as_deref()?.get::<T>()
    }

    /// The value of type `T` for writing, if any. The map is copied first
    /// when another clone shares it.
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        // A miss must not copy a shared map.
        self.get::<T>()?;
        self.writable().get_mut::<T>()
    }

    /// Removes and returns the value of type `T`, if any.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.get::<T>()?;
        self.writable().remove::<T>()
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.map = None;
    }

    /// Whether the map holds no value.
    pub fn is_empty(&self) -> bool {
        self.map.as_deref().is_none_or(http::Extensions::is_empty)
    }

    /// How many values the map holds.
    pub fn len(&self) -> usize {
        self.map.as_deref().map_or(0, http::Extensions::len)
    }

    /// Moves every value of `other` into this map, replacing those of the
    /// same types.
    pub fn extend(&mut self, other: Extensions) {
        let Some(other) = other.map else { return };
        let other = Arc::unwrap_or_clone(other);
        self.writable().extend(other);
    }

    /// This map as an [`http::Extensions`] (for an HTTP request or
    /// response); it copies the map only when a clone shares it.
    pub fn into_http(self) -> http::Extensions {
        self.map.map(Arc::unwrap_or_clone).unwrap_or_default()
    }

    fn writable(&mut self) -> &mut http::Extensions {
        Arc::make_mut(self.map.get_or_insert_with(Arc::default))
    }
}

impl From<http::Extensions> for Extensions {
    fn from(map: http::Extensions) -> Self {
        Extensions {
            map: (!map.is_empty()).then(|| Arc::new(map)),
        }
    }
}

impl fmt::Debug for Extensions {
    // The values need not be `Debug`, and may hold what should not be
    // printed: only their count is shown, as `http::Extensions` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Mark(u32);

    #[test]
    fn clones_share_until_one_writes() {
        let mut a = Extensions::new();
        assert!(a.is_empty());
        a.insert(Mark(1));
        let b = a.clone();
        assert!(Arc::ptr_eq(
            a.map.as_ref().unwrap(),
            b.map.as_ref().unwrap()
        ));
        let mut c = b.clone();
        *c.get_mut::<Mark>().unwrap() = Mark(2);
        assert_eq!(a.get::<Mark>(), Some(&Mark(1)));
        assert_eq!(b.get::<Mark>(), Some(&Mark(1)));
        assert_eq!(c.get::<Mark>(), Some(&Mark(2)));
        assert_eq!(c.remove::<Mark>(), Some(Mark(2)));
        assert_eq!(c.len(), 0);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn reads_and_misses_never_allocate() {
        let mut a = Extensions::new();
        assert_eq!(a.get::<Mark>(), None);
        assert_eq!(a.get_mut::<Mark>(), None);
        assert_eq!(a.remove::<Mark>(), None);
        assert!(a.map.is_none());
    }

    #[test]
    fn converts_to_and_from_http() {
        let mut http = http::Extensions::new();
        http.insert(Mark(7));
        let ours = Extensions::from(http);
        let mut other = Extensions::new();
        other.extend(ours.clone());
        assert_eq!(other.get::<Mark>(), Some(&Mark(7)));
        assert_eq!(ours.into_http().get::<Mark>(), Some(&Mark(7)));
        assert!(format!("{other:?}").contains("len: 1"));
    }
}
