//! Per-request metadata for the layers, shared between clones of a request.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

/// A type map of per-request metadata (a [`Deadline`](crate::Deadline), the
/// budget's allowance, your own markers), with the API of
/// [`http::Extensions`] (`insert`, `get`, `get_mut`, `remove`).
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
    map: Option<Arc<Vec<Entry>>>,
}

/// A value of any type that can be cloned with its map.
trait AnyClone: Any + Send + Sync {
    fn clone_box(&self) -> Box<dyn AnyClone>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Clone + Send + Sync + 'static> AnyClone for T {
    fn clone_box(&self) -> Box<dyn AnyClone> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// One value and its type. A request carries a handful at most (a
/// deadline, an allowance, a marker or two), so the map is a short list
/// searched in order: no hashing, one allocation for the list.
struct Entry {
    id: TypeId,
    value: Box<dyn AnyClone>,
}

impl Clone for Entry {
    fn clone(&self) -> Self {
        Entry {
            id: self.id,
            value: self.value.clone_box(),
        }
    }
}

fn take<T: 'static>(value: Box<dyn AnyClone>) -> Option<T> {
    value.into_any().downcast::<T>().ok().map(|b| *b)
}

impl Extensions {
    /// An empty map; it allocates nothing until the first insert.
    pub const fn new() -> Self {
        Extensions { map: None }
    }

    /// Inserts `value`, returning the value of its type that was there.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        let id = TypeId::of::<T>();
        let entries = self.writable();
        match entries.iter_mut().find(|e| e.id == id) {
            Some(entry) => take(std::mem::replace(&mut entry.value, Box::new(value))),
            None => {
                entries.push(Entry {
                    id,
                    value: Box::new(value),
                });
                None
            }
        }
    }

    /// The value of type `T`, if any.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        let entry = self.map.as_deref()?.iter().find(|e| e.id == id)?;
        entry.value.as_any().downcast_ref()
    }

    /// The value of type `T` for writing, if any. The map is copied first
    /// when another clone shares it.
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        // A miss must not copy a shared map.
        self.get::<T>()?;
        let id = TypeId::of::<T>();
        let entry = self.writable().iter_mut().find(|e| e.id == id)?;
        entry.value.as_any_mut().downcast_mut()
    }

    /// Removes and returns the value of type `T`, if any.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.get::<T>()?;
        let id = TypeId::of::<T>();
        let entries = self.writable();
        let index = entries.iter().position(|e| e.id == id)?;
        take(entries.swap_remove(index).value)
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.map = None;
    }

    /// Whether the map holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many values the map holds.
    pub fn len(&self) -> usize {
        self.map.as_deref().map_or(0, Vec::len)
    }

    /// Moves every value of `other` into this map, replacing those of the
    /// same types.
    pub fn extend(&mut self, other: Extensions) {
        let Some(other) = other.map else { return };
        let entries = self.writable();
        for entry in Arc::unwrap_or_clone(other) {
            match entries.iter_mut().find(|e| e.id == entry.id) {
                Some(mine) => *mine = entry,
                None => entries.push(entry),
            }
        }
    }

    fn writable(&mut self) -> &mut Vec<Entry> {
        Arc::make_mut(
            self.map
                .get_or_insert_with(|| Arc::new(Vec::with_capacity(4))),
        )
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
    fn values_are_replaced_removed_and_extended_by_type() {
        #[derive(Clone, Debug, PartialEq)]
        struct Other(&'static str);
        let mut a = Extensions::new();
        assert_eq!(a.insert(Mark(1)), None);
        assert_eq!(a.insert(Other("x")), None);
        assert_eq!(a.insert(Mark(2)), Some(Mark(1)));
        assert_eq!(a.len(), 2);
        let mut b = Extensions::new();
        b.insert(Mark(9));
        b.extend(a.clone());
        assert_eq!(
            b.get::<Mark>(),
            Some(&Mark(2)),
            "the extension's value wins"
        );
        assert_eq!(b.get::<Other>(), Some(&Other("x")));
        assert_eq!(a.remove::<Other>(), Some(Other("x")));
        assert_eq!(a.get::<Other>(), None);
        assert_eq!(b.len(), 2, "a's removal is not b's");
        assert!(format!("{b:?}").contains("len: 2"));
        b.clear();
        assert!(b.is_empty());
    }
}
