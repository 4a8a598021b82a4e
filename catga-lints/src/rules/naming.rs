//! Event names in the past tense (CATGA051): the last word of the type name should be a past
//! participle (`OrderPlaced`, `PaymentReceived`, `StockSold`, `FileWritten`).

/// Irregular past participles that do not end in `-ed`.
const IRREGULAR: &[&str] = &[
    "Begun",
    "Bent",
    "Bid",
    "Bitten",
    "Blown",
    "Born",
    "Bought",
    "Broken",
    "Brought",
    "Built",
    "Cast",
    "Caught",
    "Chosen",
    "Cut",
    "Dealt",
    "Done",
    "Drawn",
    "Driven",
    "Dug",
    "Eaten",
    "Fallen",
    "Fed",
    "Felt",
    "Fled",
    "Flown",
    "Forgiven",
    "Forgotten",
    "Found",
    "Frozen",
    "Given",
    "Gone",
    "Grown",
    "Held",
    "Hidden",
    "Hit",
    "Hung",
    "Hurt",
    "Kept",
    "Known",
    "Laid",
    "Led",
    "Left",
    "Lent",
    "Let",
    "Lost",
    "Made",
    "Meant",
    "Met",
    "Paid",
    "Proven",
    "Put",
    "Quit",
    "Read",
    "Rebuilt",
    "Reset",
    "Rewritten",
    "Risen",
    "Run",
    "Seen",
    "Sent",
    "Set",
    "Shaken",
    "Shed",
    "Shown",
    "Shut",
    "Sold",
    "Sought",
    "Spent",
    "Split",
    "Spoken",
    "Spread",
    "Spun",
    "Stolen",
    "Struck",
    "Stuck",
    "Sworn",
    "Taken",
    "Taught",
    "Thought",
    "Thrown",
    "Told",
    "Torn",
    "Undone",
    "Upset",
    "Withdrawn",
    "Woken",
    "Won",
    "Worn",
    "Written",
];

/// Particles of phrasal verbs: in `UserSignedUp` the verb is `Signed`.
const PARTICLES: &[&str] = &[
    "Up", "Out", "In", "Off", "Down", "Over", "Back", "Away", "On",
];

/// The words of a CamelCase name (`OrderPlaced` → `Order`, `Placed`).
fn words(name: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = name
        .char_indices()
        .filter(|(i, c)| *i == 0 || c.is_ascii_uppercase())
        .map(|(i, _)| i)
        .collect();
    starts.push(name.len());
    starts.windows(2).map(|w| &name[w[0]..w[1]]).collect()
}

/// Whether an event's type name reads as something that happened.
pub fn reads_as_past(name: &str) -> bool {
    let words = words(name);
    // `OrderPlacedV2`: a version suffix is not the verb.
    let is_version =
        |w: &str| w.len() > 1 && w.starts_with('V') && w[1..].bytes().all(|b| b.is_ascii_digit());
    let verb = words
        .iter()
        .rev()
        .find(|w| !PARTICLES.contains(w) && !is_version(w))
        .copied()
        .unwrap_or(name);
    verb.ends_with("ed") || IRREGULAR.contains(&verb)
}

#[cfg(test)]
mod tests {
    use super::reads_as_past;

    #[test]
    fn past_and_present() {
        for ok in [
            "OrderPlaced",
            "PaymentReceived",
            "StockSold",
            "FileWritten",
            "Reset",
            "UserSignedUp",
        ] {
            assert!(reads_as_past(ok), "{ok}");
        }
        for bad in [
            "PlaceOrder",
            "OrderPlace",
            "ShipOrder",
            "OrderEvent",
            "Tick",
            "LogIn",
        ] {
            assert!(!reads_as_past(bad), "{bad}");
        }
    }
}
