//! A balanced target inside the recommended stack: each deployment behind
//! its own breaker and quota, the balancer inside a fallback chain.

use staunch::balance::{
    AllDeploymentsOut, Balance, BalanceConfig, Deployment, OutReason, Strategy,
};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use staunch::core::{ChatRequest, ErrorKind, Message, QualityTier};
use staunch::fallback::{Fallback, Target};
use staunch::quota::{QuotaConfig, QuotaLayer};
use staunch_test::{FakeProvider, Step, fail};
use std::time::Duration;
use tower::{Layer, ServiceExt};

fn ask() -> ChatRequest {
    ChatRequest::new("gpt-4o", vec![Message::user("hello")]).with_max_tokens(10)
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_passed_over_and_the_chain_moves_on_only_when_all_are_out() {
    let breaker = |name: &str| {
        CircuitBreakerLayer::new(CircuitBreakerConfig::new(name).consecutive_failures(Some(1)))
            .unwrap()
    };
    let (east_breaker, west_breaker) = (breaker("east"), breaker("west"));
    let east = FakeProvider::scripted([fail(ErrorKind::Overloaded)]);
    let west = FakeProvider::scripted([Step::Answer]);
    let balance = Balance::new(
        BalanceConfig::new("gpt-4o").strategy(Strategy::WeightedRandom),
        [
            Deployment::new("east", east_breaker.layer(east.clone()))
                .weight(50)
                .health(east_breaker.handle()),
            Deployment::new("west", west_breaker.layer(west.clone())).health(west_breaker.handle()),
        ],
    )
    .unwrap();
    let handle = balance.handle();
    let backup = FakeProvider::scripted([Step::Answer]);
    let chain = Fallback::new([
        Target::new("gpt-4o", balance.clone()).health(handle.clone()),
        Target::new("backup", backup.clone()).model("gpt-4o-mini"),
    ])
    .unwrap();

    for _ in 0..10 {
        let answer = chain.clone().oneshot(ask()).await.unwrap();
        assert_eq!(answer.meta.deployment.as_deref(), Some("west"));
        assert_eq!(answer.meta.target.as_deref(), Some("gpt-4o"));
        assert_eq!(
            answer.meta.tier,
            QualityTier::Full,
            "a deployment is the same model"
        );
    }
    assert!(east.calls() <= 1, "its circuit opened at its first failure");
    assert_eq!(backup.calls(), 0, "the chain never moved on");
    assert!(matches!(handle.out()[..], [(ref n, OutReason::CircuitOpen(_))] if n == "east"));

    // West goes down too: now the whole target is out and the chain moves on.
    west.script([fail(ErrorKind::Overloaded)], Step::Answer);
    let answer = chain.clone().oneshot(ask()).await.unwrap();
    assert_eq!(answer.meta.target.as_deref(), Some("backup"));
    let answer = chain.clone().oneshot(ask()).await.unwrap();
    assert_eq!(answer.meta.target.as_deref(), Some("backup"));
    let error = balance.oneshot(ask()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::CircuitOpen);
    let account = AllDeploymentsOut::of(&error).expect("says every deployment is out");
    assert_eq!(account.deployments.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_deployment_without_quota_room_is_never_picked() {
    let quota = |rpm: u64| {
        QuotaLayer::new(
            QuotaConfig::new("q")
                .requests_per_minute(rpm)
                .max_wait(Duration::ZERO),
        )
        .unwrap()
    };
    let (small_quota, big_quota) = (quota(3), quota(1_000));
    let small = FakeProvider::scripted([Step::Answer]);
    let big = FakeProvider::scripted([Step::Answer]);
    let balance = Balance::new(
        BalanceConfig::new("gpt-4o").strategy(Strategy::WeightedRandom),
        [
            Deployment::new("small", small_quota.layer(small.clone()))
                .weight(1_000)
                .headroom(small_quota.handle()),
            Deployment::new("big", big_quota.layer(big.clone())).headroom(big_quota.handle()),
        ],
    )
    .unwrap();
    for _ in 0..30 {
        balance.clone().oneshot(ask()).await.unwrap();
    }
    assert_eq!(small.calls(), 3, "its three a minute, then never a refusal");
    assert_eq!(big.calls(), 27);

    // The headroom strategy sends the next calls to the most room.
    let headroom = Balance::new(
        BalanceConfig::new("gpt-4o").strategy(Strategy::Headroom),
        [
            Deployment::new("small", small_quota.layer(small.clone()))
                .headroom(small_quota.handle()),
            Deployment::new("big", big_quota.layer(big.clone())).headroom(big_quota.handle()),
        ],
    )
    .unwrap();
    let answer = headroom.oneshot(ask()).await.unwrap();
    assert_eq!(answer.meta.deployment.as_deref(), Some("big"));
}

#[tokio::test(start_paused = true)]
async fn a_revoked_key_is_reported_and_the_model_keeps_answering() {
    let revoked =
        FakeProvider::scripted([staunch_test::fail_status(ErrorKind::Authentication, 401)]);
    let fine = FakeProvider::scripted([Step::Answer]);
    let balance = Balance::new(
        BalanceConfig::new("gpt-4o").eject_for(Duration::from_secs(3_600)),
        [
            Deployment::new("key-1", revoked.clone()),
            Deployment::new("key-2", fine.clone()),
        ],
    )
    .unwrap();
    let handle = balance.handle();
    for _ in 0..20 {
        let answer = balance.clone().oneshot(ask()).await.unwrap();
        assert_eq!(answer.meta.deployment.as_deref(), Some("key-2"));
    }
    assert!(revoked.calls() <= 1);
    let status = handle.deployments();
    assert!(matches!(status[0].out, Some(OutReason::Ejected(..))));
    assert_eq!(status[1].answered, 20);
    assert_eq!(status[1].out, None);
}
