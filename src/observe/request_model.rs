//! The request's model name, kept by the instrument for its answer's
//! labels without an allocation per request.

use std::cell::RefCell;
use std::sync::Arc;

/// Names remembered per thread; past this many the memory starts over.
const REMEMBERED: usize = 32;

thread_local! {
    static NAMES: RefCell<Vec<Arc<str>>> = const { RefCell::new(Vec::new()) };
}

/// `model` as a shared name: the request is gone when its answer is
/// labelled, and a stack sees a handful of model names, so each thread
/// keeps the names it met and hands out a reference to one instead of
/// copying the name for every request.
pub(super) fn shared(model: &str) -> Arc<str> {
    NAMES
        .try_with(|names| {
            let mut names = names.try_borrow_mut().ok()?;
            if let Some(name) = names.iter().find(|n| ***n == *model) {
                return Some(name.clone());
            }
            if names.len() >= REMEMBERED {
                names.clear();
            }
            let name: Arc<str> = Arc::from(model);
            names.push(name.clone());
            Some(name)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::from(model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_met_again_is_the_same_name_and_many_names_are_all_kept_right() {
        let first = shared("gpt-4o");
        assert!(Arc::ptr_eq(&first, &shared("gpt-4o")));
        for n in 0..(3 * REMEMBERED) {
            let name = format!("model-{n}");
            assert_eq!(&*shared(&name), name);
        }
        assert_eq!(&*shared("gpt-4o"), "gpt-4o");
    }
}
