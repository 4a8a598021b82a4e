// Generated code names nothing through the user's scope: user items with the names it uses
// (its prelude's `Result`, `Option`, `Arc`, `Vec`, `Message`, the probe types) and statics
// named like its parameters and bindings (a binding cannot shadow a static) compile as if the
// generated code were not there. Only names starting with `__catga` are reserved.
#![allow(dead_code, non_upper_case_globals, clippy::disallowed_names)]
use catga_core::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("failed")]
pub struct ErrorSlot;

type Result<T> = std::result::Result<T, ErrorSlot>;
type Option<T> = std::option::Option<T>;

pub struct Probe;
pub struct Arc(u64);
pub struct Vec;
pub struct States;
pub struct Converted;
pub struct Json;
pub static json: &str = "{}";
pub static codec: &str = "json";
pub static bytes: &[u8] = b"";
pub static states: u8 = 0;
pub static __json: u8 = 0;
pub static __msg: u8 = 0;
pub static __state: u8 = 0;
pub static __result: u8 = 0;
pub static msg: u8 = 0;
pub static ctx: u8 = 0;
pub static event: u8 = 0;
pub static layers: u8 = 0;
pub static outcome: u8 = 0;
pub static missing: u8 = 0;
pub static s: u8 = 0;
pub static output: u8 = 0;

#[command(output = Option<u32>)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub qty: u32,
}

#[query(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wrapper;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Happened;

#[handler]
async fn place(cmd: Message, arc: &Arc, cx: &Context) -> Result<Option<u32>> {
    if cx.publish(Happened).is_err() {
        return Err(ErrorSlot);
    }
    Ok(Some(cmd.qty + arc.0 as u32))
}

#[handler]
async fn look(_q: Wrapper) -> Result<u64> {
    Ok(1)
}

#[handler]
async fn seen(_e: &Happened) -> Result<()> {
    Ok(())
}

catga_core::static_app! {
    /// The same handlers, routed at compile time.
    pub struct Fixed {
        Message => place,
        Wrapper => look,
        Happened => [seen],
    }
}

fn main() {
    let _ = Catga::builder().state(Arc(1)).build();
    let _ = Fixed::builder().state(Arc(1)).build();
}
