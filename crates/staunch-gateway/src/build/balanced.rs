//! A target with several deployments: each deployment its own stack
//! (breaker, retry, quota, attempt timeout over its provider's client),
//! spread by a [`Balance`], hedged when the target asks, and the whole a
//! single target of the route's fallback chain, skipped while every
//! deployment is out.

use super::{GatewayError, Sharing, Stack, attempt_stack};
use crate::config::{HedgeAfter, RouteTarget};
use staunch::balance::{Balance, BalanceConfig, Strategy};
use staunch::circuit_breaker::CircuitBreakerHandle;
use staunch::core::{Operation, Price};
use staunch::fallback::Target;
use staunch::hedge::{HedgeBudget, HedgeConfig, HedgeLayer};
use std::collections::HashMap;
use std::time::Duration;
use tower::Layer;

/// The chat target of `t` (a target with `deployments`), and the breakers
/// of its deployments (named `provider/model`) for readiness.
pub(super) fn chat_target(
    at: &str,
    t: &RouteTarget,
    clients: &HashMap<String, Stack>,
    sharing: &mut Sharing,
) -> Result<(Target, Vec<(String, CircuitBreakerHandle)>), GatewayError> {
    let setting = |e: &dyn std::fmt::Display| GatewayError::Setting(format!("{at}: {e}"));
    let mut deployments = Vec::with_capacity(t.deployments.len());
    let mut breakers = Vec::with_capacity(t.deployments.len());
    for (i, d) in t.deployments.iter().enumerate() {
        let client = clients.get(&d.provider).cloned().ok_or_else(|| {
            setting(&format_args!(
                "deployments[{i}]: no provider named {:?}",
                d.provider
            ))
        })?;
        let model = d.model.as_deref().unwrap_or(&t.model);
        let name = format!("{}/{model}", d.provider);
        let place = format!("{at}.deployments[{i}]");
        let builder = attempt_stack(
            name.clone(),
            &name,
            t,
            client,
            sharing,
            Operation::Chat,
            &place,
        )?;
        let (deployment, handle) = builder
            .build_deployment()
            .map_err(|e| setting(&format_args!("deployments[{i}]: {e}")))?;
        sharing.share(&name, &handle);
        let mut deployment = deployment.weight(d.weight);
        if d.model.is_some() {
            deployment = deployment.model(model.to_owned());
        }
        deployments.push(deployment);
        breakers.push((name, handle));
    }
    let strategy = match &t.balance {
        Some(name) => name
            .parse::<Strategy>()
            .map_err(|e| setting(&format_args!("balance: {e}")))?,
        None => Strategy::default(),
    };
    let balance = Balance::new(BalanceConfig::new(t.name()).strategy(strategy), deployments)
        .map_err(|e| setting(&e))?;
    let health = balance.handle();
    let service = match &t.hedge {
        None => Stack::new(balance),
        Some(hedge) => {
            let after = match hedge.after {
                HedgeAfter::P95 => staunch::hedge::HedgeAfter::Quantile(0.95),
                HedgeAfter::Millis(ms) => {
                    staunch::hedge::HedgeAfter::Fixed(Duration::from_millis(ms))
                }
            };
            // The budget's window: calls of the last 10 s make the room.
            let budget = HedgeBudget::new(Duration::from_secs(10), 0, hedge.budget as f32)
                .map_err(|e| setting(&format_args!("hedge: {e}")))?;
            let layer = HedgeLayer::new(HedgeConfig::new().after(after).budget(budget))
                .map_err(|e| setting(&format_args!("hedge: {e}")))?;
            Stack::new(layer.layer(balance))
        }
    };
    let mut target = Target::new(t.name(), service)
        .model(t.model.clone())
        .accepts_prefill(t.accepts_prefill)
        .health(health);
    if let Some(price) = t.price {
        target = target.price(Price::per_million(price.input, price.output));
    }
    if let Some(window) = t.context_window {
        target = target.context_window(window);
    }
    Ok((target, breakers))
}
