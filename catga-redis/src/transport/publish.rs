//! Publishing an event: one `XADD` to the event's stream, trimmed as configured; `publish`
//! returns once the server answered.

use catga_core::envelope::Envelope;
use catga_core::transport::TransportError;

use super::Shared;
use crate::entry::each_field;
use crate::error::CommandError;

impl Shared {
    /// Adds `envelope` to its event stream.
    pub(crate) async fn publish(&self, envelope: Envelope) -> Result<(), TransportError> {
        self.check_size(&envelope)?;
        let key = self.keys.events(&envelope.name);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&key);
        if let Some(n) = self.config.max_len {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*");
        each_field(&envelope, |name, value| {
            cmd.arg(name).arg(value);
        });
        let mut manager = self.manager.clone();
        let added = self
            .bounded(cmd.query_async::<redis::Value>(&mut manager))
            .await;
        self.link.saw(&added);
        added.map_err(|e| CommandError::new("XADD", key, e).into_transport())?;
        Ok(())
    }
}
