//! The in-memory transport's redelivery options speak the same vocabulary, and refuse the same
//! values, as the NATS and Redis transports' (`catga_core::transport::options`).

use std::time::Duration;

use catga_core::transport::MemoryTransport;

#[test]
fn zero_deliveries_is_refused_with_the_option_and_value() {
    let err = MemoryTransport::new().max_deliveries(0).err();
    let err = err.map(|e| (e.option, e.value));
    assert_eq!(err, Some(("max_deliveries", "0".to_string())));
}

#[test]
fn an_empty_backoff_is_refused() {
    let err = MemoryTransport::new().backoff([]).err();
    assert_eq!(err.map(|e| e.option), Some("backoff"));
}

#[test]
fn a_setting_on_a_clone_is_refused_rather_than_ignored() {
    let bus = MemoryTransport::new();
    let _other = bus.clone();
    let err = bus.max_deliveries(5).err();
    assert_eq!(err.map(|e| e.option), Some("max_deliveries"));
    let bus = MemoryTransport::new();
    let _other = bus.clone();
    let err = bus.backoff([Duration::ZERO]).err();
    assert_eq!(err.map(|e| e.option), Some("backoff"));
}

#[test]
fn valid_settings_chain() {
    let bus = MemoryTransport::new()
        .max_deliveries(1)
        .and_then(|bus| bus.backoff([Duration::from_millis(10), Duration::from_millis(50)]));
    assert!(bus.is_ok());
}
