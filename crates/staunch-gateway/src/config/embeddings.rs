//! Which targets of a route serve its embeddings: those whose provider
//! has an embeddings API, and only when they share one vector space, since
//! a fallback from one embedding model to another would hand the client
//! vectors it cannot compare with those it already stored.

use super::{ProviderKind, Route};

/// How a route serves `POST /v1/embeddings`, decided once from its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EmbeddingPlan {
    /// Through these targets (indexes into the route's `targets`, in
    /// order), all of one vector space.
    Serves(Vec<usize>),
    /// Not at all, for this reason (a sentence for the client).
    Unserved(String),
    /// The targets declare different spaces: a configuration error.
    /// Indexes of the first embedding target and of one that differs.
    Mixed {
        /// The first target that serves embeddings.
        first: usize,
        /// A later one in another space.
        other: usize,
    },
}

/// The plan for `route`, with `kind` telling each provider's kind (`None`
/// for an unknown provider, which serves nothing).
///
/// A target's space is its `embedding_space`, else its model. Targets that
/// differ are an error once any of them declares a space (the route is
/// meant for embeddings and says so); without declarations the route is
/// taken for a chat route (`gpt-4o` falling back to `gpt-4o-mini` is
/// fine for chat) and serves no embeddings, telling the client why.
pub(crate) fn plan(route: &Route, kind: impl Fn(&str) -> Option<ProviderKind>) -> EmbeddingPlan {
    let capable: Vec<usize> = route
        .targets
        .iter()
        .enumerate()
        .filter(|(_, t)| kind(&t.provider).is_some_and(ProviderKind::serves_embeddings))
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = capable.first() else {
        return EmbeddingPlan::Unserved(format!(
            "the route {:?} serves no embeddings: none of its targets' providers has an \
             embeddings API (only kinds openai, openai-compatible, gemini and mock do)",
            route.model
        ));
    };
    let space = route.targets[first].embedding_space();
    let Some(&other) = capable
        .iter()
        .find(|&&i| route.targets[i].embedding_space() != space)
    else {
        return EmbeddingPlan::Serves(capable);
    };
    if capable
        .iter()
        .any(|&i| route.targets[i].embedding_space.is_some())
    {
        return EmbeddingPlan::Mixed { first, other };
    }
    let name = |i: usize| {
        let t = &route.targets[i];
        format!("{}/{}", t.provider, t.model)
    };
    EmbeddingPlan::Unserved(format!(
        "the route {:?} serves no embeddings: its targets {} and {} name different models, \
         and a fallback between them would mix two vector spaces; route the embedding model \
         on a [[routes]] of its own, or give targets that serve the same model under \
         different names the same embedding_space",
        route.model,
        name(first),
        name(other)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteTarget;

    fn kind(provider: &str) -> Option<ProviderKind> {
        match provider {
            "openai" => Some(ProviderKind::OpenAi),
            "azure" => Some(ProviderKind::OpenAiCompatible),
            "anthropic" => Some(ProviderKind::Anthropic),
            _ => None,
        }
    }

    fn spaced(provider: &str, model: &str, space: &str) -> RouteTarget {
        RouteTarget {
            embedding_space: Some(space.to_owned()),
            ..RouteTarget::new(provider, model)
        }
    }

    #[test]
    fn one_space_serves_through_every_target_that_can() {
        let route = Route::new(
            "embed",
            vec![
                RouteTarget::new("anthropic", "claude"),
                RouteTarget::new("openai", "e3"),
                RouteTarget::new("azure", "e3"),
            ],
        );
        assert_eq!(plan(&route, kind), EmbeddingPlan::Serves(vec![1, 2]));
        let named = Route::new(
            "embed",
            vec![
                RouteTarget::new("openai", "e3"),
                spaced("azure", "my-deployment", "e3"),
            ],
        );
        assert_eq!(plan(&named, kind), EmbeddingPlan::Serves(vec![0, 1]));
    }

    #[test]
    fn different_models_serve_nothing_unless_declared_then_are_an_error() {
        let chat = Route::new(
            "gpt-*",
            vec![
                RouteTarget::new("openai", "gpt-4o"),
                RouteTarget::new("openai", "gpt-4o-mini"),
            ],
        );
        let EmbeddingPlan::Unserved(why) = plan(&chat, kind) else {
            panic!("served")
        };
        assert!(
            why.contains("openai/gpt-4o and openai/gpt-4o-mini"),
            "{why}"
        );
        let declared = Route::new(
            "embed",
            vec![
                spaced("openai", "e3", "e3"),
                spaced("azure", "nomic", "nomic"),
            ],
        );
        assert_eq!(
            plan(&declared, kind),
            EmbeddingPlan::Mixed { first: 0, other: 1 }
        );
        let anthropic = Route::new("claude-*", vec![RouteTarget::new("anthropic", "claude")]);
        assert!(matches!(plan(&anthropic, kind), EmbeddingPlan::Unserved(_)));
    }
}
