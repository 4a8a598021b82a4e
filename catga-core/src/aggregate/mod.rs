//! Event-sourced aggregates: state rebuilt from events, saved with optimistic concurrency.
//!
//! An [`Aggregate`] is a consistency boundary (an account, an order) whose state is never
//! stored: its *events* are, in one stream per aggregate, and the state is the fold of them.
//! A change takes three steps:
//!
//! 1. **load**: [`Repository::load`] replays the stream into a [`Loaded`] aggregate, which
//!    remembers the stream's version;
//! 2. **decide**: a command, a plain method you write on the aggregate, checks the state and
//!    returns events (or refuses); [`Loaded::record`] applies each one and queues it;
//! 3. **save**: [`Repository::save`] appends the queued events *only if the stream is still
//!    at the loaded version*. If another writer got there first, the save fails with a
//!    conflict and writes nothing: the decision was made on stale state.
//!
//! [`Repository::execute`] does all three and, on a conflict, loads again and decides again,
//! a bounded number of times. Events are stored as JSON through an
//! [`EventStore`](crate::store::event::EventStore);
//! [`InMemoryEventStore`](crate::store::memory_event::InMemoryEventStore) keeps them in memory.
//!
//! ```
//! use catga_core::aggregate::{Aggregate, ExecuteError, Repository};
//! use catga_core::store::memory_event::InMemoryEventStore;
//! use serde::{Deserialize, Serialize};
//! use std::sync::Arc;
//!
//! #[derive(Default, Debug)]
//! struct Account { balance: u64 }
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! enum AccountEvent { Deposited(u64), Withdrawn(u64) }
//!
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! #[error("insufficient funds: balance {balance}, asked {asked}")]
//! struct InsufficientFunds { balance: u64, asked: u64 }
//!
//! impl Account {
//!     fn deposit(&self, amount: u64) -> Vec<AccountEvent> {
//!         vec![AccountEvent::Deposited(amount)]
//!     }
//!     fn withdraw(&self, amount: u64) -> Result<Vec<AccountEvent>, InsufficientFunds> {
//!         if amount > self.balance {
//!             return Err(InsufficientFunds { balance: self.balance, asked: amount });
//!         }
//!         Ok(vec![AccountEvent::Withdrawn(amount)])
//!     }
//! }
//!
//! impl Aggregate for Account {
//!     type Event = AccountEvent;
//!     const TYPE: &'static str = "account";
//!
//!     fn apply(&mut self, event: &AccountEvent) {
//!         match event {
//!             AccountEvent::Deposited(n) => self.balance += n,
//!             AccountEvent::Withdrawn(n) => self.balance -= n,
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(InMemoryEventStore::new());
//! let accounts = Repository::<Account, _>::new(store.clone());
//!
//! // Load (an unknown id is a fresh account), decide, save.
//! let mut account = accounts.load("42").await?;
//! assert_eq!(account.version(), 0);
//! account.record_all(account.deposit(100));
//! account.record_all(account.withdraw(30)?);
//! assert_eq!((account.balance, account.version(), account.stored_version()), (70, 2, 0));
//! assert_eq!(accounts.save(&mut account).await?, 2);
//! assert!(account.uncommitted().is_empty());
//!
//! // Replaying the stream gives the same state.
//! let reloaded = accounts.load("42").await?;
//! assert_eq!((reloaded.balance, reloaded.version()), (70, 2));
//!
//! // Two writers decide on the same version: the second save is refused.
//! let mut first = accounts.load("42").await?;
//! let mut second = accounts.load("42").await?;
//! first.record_all(first.withdraw(50)?);
//! second.record_all(second.withdraw(50)?);
//! accounts.save(&mut first).await?;
//! let refused = accounts.save(&mut second).await.unwrap_err();
//! assert!(refused.is_conflict());
//!
//! // `execute` loads, decides and saves in one call, retrying on conflicts; the
//! // command's own refusal comes back typed.
//! let saved = accounts.execute("42", |account| account.withdraw(20)).await?;
//! assert_eq!((saved.balance, saved.version()), (0, 4));
//! let err = accounts.execute("42", |account| account.withdraw(1)).await.unwrap_err();
//! assert!(matches!(err, ExecuteError::Rejected(InsufficientFunds { balance: 0, asked: 1 })));
//! # Ok(())
//! # }
//! ```

mod error;
mod loaded;
mod repository;
mod root;

pub use error::{ExecuteError, RepositoryError};
pub use loaded::Loaded;
pub use repository::Repository;
pub use root::Aggregate;
