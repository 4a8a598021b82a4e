//! The dense dispatch table and the whole-program checks that build it.

use std::any::Any;
use std::collections::HashMap;

use crate::handler::HandlerMeta;
use crate::message::{Event, MessageInfo, Request};
use crate::registry::descriptor::{Binding, HandlerDescriptor, MessageDescriptor};
use crate::registry::entry::{AnyEventEntry, EventEntry, RequestEntry, TypedRequest};
use crate::registry::{BuildError, Problem};
use crate::state::States;

/// A message type's handlers.
pub(crate) enum Entry {
    Request(RequestEntry),
    Event(Box<dyn AnyEventEntry>),
}

/// Handlers indexed by message slot, plus the wire-name index for the bytes path.
pub(crate) struct Table {
    slots: Vec<Option<Entry>>,
    by_name: HashMap<&'static str, &'static MessageInfo>,
}

impl Table {
    /// The handler of `M`, if registered: an index, a bounds check and one type-id compare.
    #[inline]
    pub(crate) fn request<M: Request>(&self) -> Option<TypedRequest<'_, M>> {
        match self.slots.get(M::info().slot()) {
            Some(Some(Entry::Request(entry))) => entry.typed::<M>(),
            _ => None,
        }
    }

    /// The handlers of `E`, if any.
    #[inline]
    pub(crate) fn event<E: Event>(&self) -> Option<&EventEntry<E>> {
        match self.slots.get(E::info().slot()) {
            Some(Some(Entry::Event(entry))) => (&**entry as &dyn Any).downcast_ref(),
            _ => None,
        }
    }

    pub(crate) fn entry(&self, info: &MessageInfo) -> Option<&Entry> {
        self.slots.get(info.slot()).and_then(Option::as_ref)
    }

    pub(crate) fn by_name(&self, name: &str) -> Option<&'static MessageInfo> {
        self.by_name.get(name).copied()
    }

    /// The wire names this table has handlers for: (events, requests), sorted.
    pub(crate) fn served(&self) -> (Vec<String>, Vec<String>) {
        let (mut events, mut requests) = (Vec::new(), Vec::new());
        for info in self.by_name.values() {
            match self.entry(info) {
                Some(Entry::Event(_)) => events.push(info.name().to_string()),
                Some(Entry::Request(_)) => requests.push(info.name().to_string()),
                None => {}
            }
        }
        events.sort();
        requests.sort();
        (events, requests)
    }

    /// Reads every descriptor linked into the program and builds the table, or reports every
    /// problem found.
    pub(crate) fn build(
        states: &States,
        allow_unhandled: &[&'static MessageInfo],
        routed: bool,
        keep: Option<&(dyn Fn(&HandlerMeta) -> bool + Send + Sync)>,
    ) -> Result<Table, BuildError> {
        if let Some(keep) = keep {
            let linked = inventory::iter::<HandlerDescriptor>.into_iter().count();
            let kept = inventory::iter::<HandlerDescriptor>
                .into_iter()
                .filter(|h| keep(&h.meta))
                .count();
            if linked > 0 && kept == 0 {
                // Deliberate for a pure caller; a silent mistake for a service (a filter
                // written against names without their crate prefix).
                tracing::warn!(target: "catga", linked,
                    "the `.handlers(…)` filter keeps none of the linked handlers: this application handles nothing itself (names start with the crate: `|h| h.is_in(\"module\")`)");
            }
        }
        Self::build_from(
            inventory::iter::<MessageDescriptor>
                .into_iter()
                .map(|d| (d.info)()),
            inventory::iter::<HandlerDescriptor>
                .into_iter()
                .filter(|h| keep.is_none_or(|keep| keep(&h.meta))),
            states,
            allow_unhandled,
            routed,
        )
    }

    fn build_from<'d>(
        messages: impl Iterator<Item = &'static MessageInfo>,
        handlers: impl Iterator<Item = &'d HandlerDescriptor>,
        states: &States,
        allow_unhandled: &[&'static MessageInfo],
        routed: bool,
    ) -> Result<Table, BuildError> {
        let mut problems = Vec::new();
        for type_name in states.duplicates() {
            problems.push(Problem::DuplicateState { type_name });
        }

        // Every message type we know of, declared or handled, deduplicated by identity.
        let mut infos: Vec<&'static MessageInfo> = Vec::new();
        let note = |info: &'static MessageInfo, infos: &mut Vec<&'static MessageInfo>| {
            if !infos.iter().any(|known| known.same_type(info)) {
                infos.push(info);
            }
        };
        for info in messages {
            note(info, &mut infos);
        }
        let handlers: Vec<&HandlerDescriptor> = handlers.collect();
        for h in &handlers {
            note((h.message)(), &mut infos);
        }

        // Wire names must identify one type.
        let mut by_name: HashMap<&'static str, &'static MessageInfo> = HashMap::new();
        let mut clashes: HashMap<&'static str, Vec<&'static MessageInfo>> = HashMap::new();
        for &info in &infos {
            if let Some(first) = by_name.insert(info.name(), info) {
                clashes
                    .entry(info.name())
                    .or_insert_with(|| vec![first])
                    .push(info);
            }
        }
        for (name, types) in clashes {
            problems.push(Problem::WireNameClash {
                name,
                types: types
                    .iter()
                    .map(|i| (i.type_name(), i.location()))
                    .collect(),
            });
        }

        // Bind handlers, grouped by message type.
        let mut slots: Vec<Option<Entry>> = Vec::new();
        let mut request_handlers: HashMap<usize, (&'static MessageInfo, Vec<HandlerMeta>)> =
            HashMap::new();
        for h in &handlers {
            let info = (h.message)();
            let slot = info.slot();
            if slots.len() <= slot {
                slots.resize_with(slot + 1, || None);
            }
            if info.kind().is_request() {
                request_handlers
                    .entry(slot)
                    .or_insert_with(|| (info, Vec::new()))
                    .1
                    .push(h.meta);
            }
            match (h.bind)(states) {
                Err(missing) => problems.push(Problem::MissingState {
                    handler: h.meta,
                    types: missing.0,
                }),
                Ok(Binding::Request(entry)) => {
                    if slots[slot].is_none() {
                        slots[slot] = Some(Entry::Request(entry));
                    }
                }
                Ok(Binding::Event { new_entry, handler }) => {
                    let entry = slots[slot].get_or_insert_with(|| Entry::Event(new_entry()));
                    if let Entry::Event(entry) = entry {
                        // Same slot means same type, so the typed push always succeeds.
                        let added = entry.push(handler);
                        debug_assert!(added, "event handler bound for another type");
                    }
                }
            }
        }
        for (info, metas) in request_handlers.into_values() {
            if metas.len() > 1 {
                problems.push(Problem::DuplicateHandler {
                    message: info.name(),
                    handlers: metas,
                });
            }
        }

        // Every request needs a handler, unless the application says it is handled elsewhere.
        for &info in &infos {
            let handled = handlers.iter().any(|h| (h.message)().same_type(info));
            let allowed = routed || allow_unhandled.iter().any(|a| a.same_type(info));
            if info.kind().is_request() && !handled && !allowed {
                problems.push(Problem::NoHandler {
                    message: info.name(),
                    kind: info.kind(),
                    declared_at: info.location(),
                });
            }
        }

        if problems.is_empty() {
            Ok(Table { slots, by_name })
        } else {
            problems.sort_by_key(problem_order);
            Err(BuildError::new(problems))
        }
    }
}

fn problem_order(p: &Problem) -> (u8, String) {
    match p {
        Problem::NoHandler { message, .. } => (0, message.to_string()),
        Problem::DuplicateHandler { message, .. } => (1, message.to_string()),
        Problem::MissingState { handler, .. } => (2, handler.name.to_string()),
        Problem::WireNameClash { name, .. } => (3, name.to_string()),
        Problem::DuplicateState { type_name } => (4, type_name.to_string()),
    }
}
