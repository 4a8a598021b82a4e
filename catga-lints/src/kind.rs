//! The three kinds of message, as the attributes name them.

/// Command, query or event: which attribute declared a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `#[command]`.
    Command,
    /// `#[query]`.
    Query,
    /// `#[event]`.
    Event,
}

impl Kind {
    /// The attribute's name.
    pub const fn attr(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Query => "query",
            Kind::Event => "event",
        }
    }

    /// The attribute's name with its article: "a command", "a query", "an event".
    pub const fn with_article(self) -> &'static str {
        match self {
            Kind::Command => "a command",
            Kind::Query => "a query",
            Kind::Event => "an event",
        }
    }

    /// The kind an attribute name declares.
    pub fn from_attr(name: &str) -> Option<Kind> {
        match name {
            "command" => Some(Kind::Command),
            "query" => Some(Kind::Query),
            "event" => Some(Kind::Event),
            _ => None,
        }
    }

    /// Whether it has exactly one handler and a reply.
    pub const fn is_request(self) -> bool {
        !matches!(self, Kind::Event)
    }
}
