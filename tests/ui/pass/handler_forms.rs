//! Every accepted handler form, built and dispatched.
use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

#[query(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Count;

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reset;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub id: u64,
}

pub struct Db(u64);
pub struct Clock(u64);

#[derive(Default)]
pub struct Orders;

#[handler]
impl Orders {
    async fn place(&self, cmd: PlaceOrder, ctx: &Context, db: &Db) -> Result<u64, Boom> {
        ctx.publish(OrderPlaced { id: db.0 }).map_err(|_| Boom)?;
        Ok(u64::from(cmd.qty))
    }

    async fn count(&self, _query: Count) -> Result<u64, std::io::Error> {
        Ok(7)
    }
}

// State parameters may come in any order after the message; the context anywhere.
#[handler]
async fn reset(clock: &Clock, _cmd: Reset, db: &Db, _ctx: &Context) -> Result<(), Boom> {
    let _ = (clock.0, db.0);
    Ok(())
}

#[handler]
async fn by_reference(event: &OrderPlaced, db: &Db) -> Result<(), Boom> {
    let _ = (event.id, db.0);
    Ok(())
}

#[handler]
async fn by_value(event: OrderPlaced, ctx: &Context) -> Result<(), catga_core::Error> {
    let _ = (event.id, ctx.message_id());
    Ok(())
}

#[handler]
async fn returns_catga_error(_event: &OrderPlaced) -> Result<(), catga_core::Error> {
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let app = Catga::builder()
            .state(Orders)
            .state(Db(3))
            .state(Clock(0))
            .build()
            .unwrap();
        assert_eq!(app.send(PlaceOrder { qty: 2 }).await.unwrap(), 2);
        assert_eq!(app.send(Count).await.unwrap(), 7);
        app.send(Reset).await.unwrap();
        app.publish(OrderPlaced { id: 1 }).await.unwrap();
    });
}
