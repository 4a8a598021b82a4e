//! Every accepted message form.
use catga_core::prelude::*;

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping;

#[command(output = u64, name = "orders.place", timeout = "250ms", retry = 3)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[command(local)]
pub struct WithChannel {
    pub reply: std::sync::mpsc::SyncSender<u64>,
}

#[query(output = Option<String>, name = "orders.get")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetOrder {
    pub id: u64,
}

#[event(name = "orders.placed", timeout = "2s", retry = 5)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Shipment {
    Sent { id: u64 },
    Lost,
}

fn main() {
    assert_eq!(<PlaceOrder as Message>::NAME, "orders.place");
    assert_eq!(<Ping as Message>::NAME, "Ping");
    assert_eq!(<GetOrder as Message>::KIND, catga_core::MessageKind::Query);
    assert_eq!(<OrderPlaced as Message>::info().policy().max_attempts, Some(5));
    assert!(!<WithChannel as Message>::info().is_wire());
    assert_eq!(<Shipment as Message>::NAME, "Shipment");
}
