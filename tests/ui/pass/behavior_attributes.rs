//! Every per-message behaviour setting, as the attributes accept it.

use catga_core::policy::{Rate, Skip};
use catga_core::prelude::*;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceChanged;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogReloaded;

#[command(idempotent, rate_limit = "100/s", concurrency = 8, bulkhead = "payments", skip(retry, circuit_breaker))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChargeCard {
    pub cents: u64,
}

#[query(output = u64, cache_ttl = "30s", invalidated_by(PriceChanged, CatalogReloaded), rate_limit = "20/250ms")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetPrice {
    pub sku: u64,
}

#[event(skip(dead_letter), concurrency = 2)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced;

fn main() {
    let charge = <ChargeCard as Message>::info().policy();
    assert!(charge.idempotent);
    assert_eq!(charge.rate_limit, Some(Rate::per_second(100)));
    assert_eq!(charge.max_in_flight, Some(8));
    assert_eq!(charge.bulkhead, Some("payments"));
    assert!(charge.skip.contains(Skip::RETRY.union(Skip::CIRCUIT_BREAKER)));
    assert!(!charge.skip.contains(Skip::TIMEOUT));

    let price = <GetPrice as Message>::info().policy();
    assert_eq!(price.cache_ttl, Some(std::time::Duration::from_secs(30)));
    let invalidators: Vec<&str> = price.invalidated_by.iter().map(|e| e().name()).collect();
    assert_eq!(invalidators, ["PriceChanged", "CatalogReloaded"]);
    assert_eq!(price.rate_limit.map(|r| r.interval()), Some(std::time::Duration::from_micros(12_500)));

    assert!(<OrderPlaced as Message>::info().policy().skip.contains(Skip::DEAD_LETTER));
}
