//! Errors counted by kind, each kind with the first message seen as its example.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// The longest example kept per kind.
const EXAMPLE_CHARS: usize = 240;

/// How often one kind of error happened, and what the first one said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorCount {
    /// What failed (`"get: wait timeout"`, `"transaction"`, ...).
    pub kind: String,
    /// How many times.
    pub count: u64,
    /// The first message of this kind, shortened.
    pub example: String,
}

#[derive(Debug, Default)]
pub(crate) struct ErrorTally {
    kinds: Mutex<BTreeMap<String, (u64, String)>>,
}

impl ErrorTally {
    /// Counts one error of `kind`; `message` is asked for only for the first.
    pub(crate) fn add(&self, kind: &str, message: impl FnOnce() -> String) {
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        match kinds.get_mut(kind) {
            Some((count, _)) => *count += 1,
            None => {
                kinds.insert(kind.to_owned(), (1, shortened(message())));
            }
        }
    }

    /// Every kind seen, in name order.
    pub(crate) fn counts(&self) -> Vec<ErrorCount> {
        let kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        kinds
            .iter()
            .map(|(kind, (count, example))| ErrorCount {
                kind: kind.clone(),
                count: *count,
                example: example.clone(),
            })
            .collect()
    }
}

/// `message` cut to [`EXAMPLE_CHARS`] characters, marked where it was cut.
fn shortened(message: String) -> String {
    match message.char_indices().nth(EXAMPLE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_keeps_the_first_message() {
        let tally = ErrorTally::default();
        tally.add("transaction", || "first".into());
        tally.add("get: wait timeout", || "timed out".into());
        tally.add("transaction", || {
            unreachable!("only the first message is asked for")
        });
        let counts = tally.counts();
        assert_eq!(counts.len(), 2);
        assert_eq!(
            (
                counts[1].kind.as_str(),
                counts[1].count,
                counts[1].example.as_str()
            ),
            ("transaction", 2, "first")
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let cut = shortened("é".repeat(EXAMPLE_CHARS + 5));
        assert_eq!(cut.chars().count(), EXAMPLE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(shortened("short".into()), "short");
    }
}
