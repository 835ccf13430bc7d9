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
    map: Option<Arc<dyn Values>>,
}

/// The values behind a map: one value alone (most requests carry one, the
/// budget's allowance or a deadline: its block is the value itself, one
/// allocation), or a list once there are more.
trait Values: Send + Sync {
    fn get(&self, id: TypeId) -> Option<&dyn Any>;
    fn get_mut(&mut self, id: TypeId) -> Option<&mut dyn Any>;
    /// A copy for a writer while clones share this one.
    fn copy(&self) -> Arc<dyn Values>;
    fn len(&self) -> usize;
    /// The values as a list's entries (copies of them).
    fn entries(&self) -> Vec<Entry>;
    /// Removes the value of type `id`; `None` when there is none.
    fn take(&mut self, id: TypeId) -> Option<Box<dyn Any>>;
    /// The list, when this is one.
    fn as_list(&mut self) -> Option<&mut List>;
}

/// A map's only value (`None` once removed).
struct One<T>(Option<T>);

impl<T: Clone + Send + Sync + 'static> Values for One<T> {
    fn get(&self, id: TypeId) -> Option<&dyn Any> {
        match &self.0 {
            Some(value) if id == TypeId::of::<T>() => Some(value),
            _ => None,
        }
    }

    fn get_mut(&mut self, id: TypeId) -> Option<&mut dyn Any> {
        match &mut self.0 {
            Some(value) if id == TypeId::of::<T>() => Some(value),
            _ => None,
        }
    }

    fn copy(&self) -> Arc<dyn Values> {
        Arc::new(One(self.0.clone()))
    }

    fn len(&self) -> usize {
        usize::from(self.0.is_some())
    }

    fn entries(&self) -> Vec<Entry> {
        self.0
            .iter()
            .map(|value| Entry {
                id: TypeId::of::<T>(),
                value: Box::new(value.clone()),
            })
            .collect()
    }

    fn take(&mut self, id: TypeId) -> Option<Box<dyn Any>> {
        if id != TypeId::of::<T>() {
            return None;
        }
        Some(Box::new(self.0.take()?))
    }

    fn as_list(&mut self) -> Option<&mut List> {
        None
    }
}

/// How many values a list holds without a buffer of its own.
const HEAD: usize = 4;

/// The values of a map of two or more: the first few live in the list's
/// block itself, so a list is one allocation and its values.
#[derive(Clone, Default)]
struct List {
    head: [Option<Entry>; HEAD],
    rest: Vec<Entry>,
}

impl List {
    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.head.iter().flatten().chain(&self.rest)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.head.iter_mut().flatten().chain(&mut self.rest)
    }

    fn push(&mut self, entry: Entry) {
        match self.head.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(entry),
            None => self.rest.push(entry),
        }
    }

    /// Inserts or replaces by type; returns the value replaced.
    fn put(&mut self, entry: Entry) -> Option<Box<dyn AnyClone>> {
        if let Some(mine) = self.iter_mut().find(|e| e.id == entry.id) {
            return Some(std::mem::replace(&mut mine.value, entry.value));
        }
        self.push(entry);
        None
    }
}

impl Values for List {
    fn get(&self, id: TypeId) -> Option<&dyn Any> {
        self.iter().find(|e| e.id == id).map(|e| e.value.as_any())
    }

    fn get_mut(&mut self, id: TypeId) -> Option<&mut dyn Any> {
        self.iter_mut()
            .find(|e| e.id == id)
            .map(|e| e.value.as_any_mut())
    }

    fn copy(&self) -> Arc<dyn Values> {
        Arc::new(self.clone())
    }

    fn len(&self) -> usize {
        self.head.iter().flatten().count() + self.rest.len()
    }

    fn entries(&self) -> Vec<Entry> {
        self.iter().cloned().collect()
    }

    fn take(&mut self, id: TypeId) -> Option<Box<dyn Any>> {
        let entry = if let Some(slot) = self
            .head
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|e| e.id == id))
        {
            slot.take()?
        } else {
            let index = self.rest.iter().position(|e| e.id == id)?;
            self.rest.swap_remove(index)
        };
        Some(entry.value.into_any())
    }

    fn as_list(&mut self) -> Option<&mut List> {
        Some(self)
    }
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

/// One value of a list and its type. A request carries a handful at most
/// (a deadline, an allowance, a marker or two), so the list is searched in
/// order: no hashing.
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

fn take<T: 'static>(value: Box<dyn Any>) -> Option<T> {
    value.downcast::<T>().ok().map(|b| *b)
}

impl Extensions {
    /// An empty map; it allocates nothing until the first insert.
    pub const fn new() -> Self {
        Extensions { map: None }
    }

    /// Inserts `value`, returning the value of its type that was there.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        let id = TypeId::of::<T>();
        let Some(values) = self.writable() else {
            // The first value: its own block.
            self.map = Some(Arc::new(One(Some(value))));
            return None;
        };
        if let Some(mine) = values.get_mut(id).and_then(|v| v.downcast_mut::<T>()) {
            return Some(std::mem::replace(mine, value));
        }
        let entry = Entry {
            id,
            value: Box::new(value),
        };
        match values.as_list() {
            Some(list) => {
                list.push(entry);
            }
            None => {
                // A second value: the one value becomes a list.
                let mut list = List::default();
                for earlier in values.entries() {
                    list.push(earlier);
                }
                list.push(entry);
                self.map = Some(Arc::new(list));
            }
        }
        None
    }

    /// The value of type `T`, if any.
    #[inline]
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map.as_deref()?.get(TypeId::of::<T>())?.downcast_ref()
    }

    /// The value of type `T` for writing, if any. The map is copied first
    /// when another clone shares it.
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        // A miss must not copy a shared map.
        self.get::<T>()?;
        self.writable()?.get_mut(TypeId::of::<T>())?.downcast_mut()
    }

    /// Removes and returns the value of type `T`, if any.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        self.get::<T>()?;
        let removed = self.writable()?.take(TypeId::of::<T>())?;
        if self.is_empty() {
            self.map = None;
        }
        take(removed)
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
        self.map.as_deref().map_or(0, |values| values.len())
    }

    /// Moves every value of `other` into this map, replacing those of the
    /// same types.
    pub fn extend(&mut self, other: Extensions) {
        let Some(other) = other.map else { return };
        let mut list = List::default();
        if let Some(mine) = &self.map {
            for entry in mine.entries() {
                list.push(entry);
            }
        }
        for entry in other.entries() {
            list.put(entry);
        }
        self.map = Some(Arc::new(list));
    }

    /// The values for writing, copied first if a clone shares them; `None`
    /// for an empty map.
    fn writable(&mut self) -> Option<&mut (dyn Values + 'static)> {
        let values = self.map.as_mut()?;
        if Arc::get_mut(values).is_none() {
            *values = values.copy();
        }
        Arc::get_mut(values)
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
        let mut d = b.clone();
        d.insert(Mark(3));
        assert_eq!(
            b.get::<Mark>(),
            Some(&Mark(1)),
            "a write copies a shared map"
        );
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
    fn one_value_is_its_own_block_until_a_second_comes() {
        #[derive(Clone, Debug, PartialEq)]
        struct Other(&'static str);
        let mut a = Extensions::new();
        a.insert(Mark(1));
        assert_eq!(a.insert(Mark(2)), Some(Mark(1)));
        assert_eq!(a.get::<Other>(), None);
        let shared = a.clone();
        *a.get_mut::<Mark>().unwrap() = Mark(3);
        assert_eq!(shared.get::<Mark>(), Some(&Mark(2)));
        a.insert(Other("x"));
        assert_eq!((a.len(), a.get::<Mark>()), (2, Some(&Mark(3))));
        assert_eq!(shared.len(), 1);
        let mut b = shared.clone();
        assert_eq!(b.remove::<Other>(), None);
        assert_eq!(b.remove::<Mark>(), Some(Mark(2)));
        assert!(b.is_empty() && b.map.is_none());
        assert_eq!(shared.get::<Mark>(), Some(&Mark(2)));
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

    #[test]
    fn holds_more_values_than_its_inline_slots() {
        #[derive(Clone, Debug, PartialEq)]
        struct Nth<const N: usize>(usize);
        let mut a = Extensions::new();
        a.insert(Nth::<0>(0));
        a.insert(Nth::<1>(1));
        a.insert(Nth::<2>(2));
        a.insert(Nth::<3>(3));
        a.insert(Nth::<4>(4));
        a.insert(Nth::<5>(5));
        assert_eq!(a.len(), 6);
        let b = a.clone();
        // One from the inline slots and one from beyond them.
        assert_eq!(a.remove::<Nth<1>>(), Some(Nth(1)));
        assert_eq!(a.remove::<Nth<5>>(), Some(Nth(5)));
        assert_eq!(a.len(), 4);
        // A freed slot is reused; the clone still sees all six.
        assert_eq!(a.insert(Nth::<6>(6)), None);
        assert_eq!(a.insert(Nth::<4>(40)), Some(Nth(4)));
        assert_eq!(a.get::<Nth<4>>(), Some(&Nth(40)));
        assert_eq!(a.get::<Nth<6>>(), Some(&Nth(6)));
        assert_eq!(a.len(), 5);
        assert_eq!(b.len(), 6);
        assert_eq!(b.get::<Nth<1>>(), Some(&Nth(1)));
        assert_eq!(b.get::<Nth<4>>(), Some(&Nth(4)));
        let mut c = Extensions::new();
        c.insert(Nth::<0>(100));
        c.extend(b);
        assert_eq!(c.len(), 6);
        assert_eq!(c.get::<Nth<0>>(), Some(&Nth(0)), "extend replaces by type");
    }
}
