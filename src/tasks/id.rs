//! Task ids: 128 random bits, written as 32 lowercase hex digits.

use std::fmt;

/// A task's id: 128 bits from the operating system's random generator,
/// written as 32 lowercase hex digits.
///
/// The id is what lets a client read its task's status and result, so it
/// can't be guessed from other ids (unlike a counter).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskId([u8; 16]);

impl TaskId {
    /// A fresh id, or why the system's generator could not give one.
    pub(crate) fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The id `text` writes (32 hex digits, either case), if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            let hex = |b: u8| (b as char).to_digit(16);
            *byte = u8::try_from(hex(pair[0])? * 16 + hex(pair[1])?).ok()?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({self})")
    }
}

impl serde::Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not a task id"))
    }
}

#[cfg(test)]
mod tests {
    use super::TaskId;

    #[test]
    fn ids_round_trip_and_differ() {
        let a = TaskId::random().unwrap();
        let b = TaskId::random().unwrap();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(TaskId::parse(&text), Some(a));
        assert_eq!(TaskId::parse(&text.to_uppercase()), Some(a));
        for bad in [
            "",
            "xyz",
            &text[..31],
            &format!("{text}0"),
            &text.replace(|_| true, "g"),
        ] {
            assert_eq!(TaskId::parse(bad), None, "{bad}");
        }
        // Not ASCII: no panic on a byte boundary.
        assert_eq!(TaskId::parse("ééééééééééééééé00"), None);
    }
}
