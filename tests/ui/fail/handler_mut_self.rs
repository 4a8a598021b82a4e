use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
pub struct Boom;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub qty: u32,
}

pub struct Orders {
    count: u64,
}

#[handler]
impl Orders {
    async fn place(&mut self, cmd: PlaceOrder) -> Result<u64, Boom> {
        self.count += u64::from(cmd.qty);
        Ok(self.count)
    }
}

fn main() {}
